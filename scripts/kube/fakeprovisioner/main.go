// fakeprovisioner binds PersistentVolumeClaims on the kwok cluster of scripts/kube-local.
//
// There is no storage driver, so nothing would ever provision a volume: claims of a StorageClass
// whose provisioner is ours get a hostPath PersistentVolume (a directory under --path: kwok's pods
// never mount it, the real kubelet of scripts/kube-node does), pre-bound to the claim. Released volumes (their claim was
// deleted, reclaim policy Delete) are deleted, as a real dynamic provisioner would. It polls
// instead of watching: a few list calls a second is nothing here and needs no resync logic.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const provisionedBy = "pv.kubernetes.io/provisioned-by"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	provisioner := flag.String("provisioner", "fashion-classifier.dev/fake-hostpath", "provisioner name of our StorageClasses")
	root := flag.String("path", "/tmp/fakeprovisioner", "directory for the volumes' hostPath")
	interval := flag.Duration("interval", time.Second, "poll interval")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	for {
		if err := reconcile(ctx, client, *provisioner, *root); err != nil {
			log.Printf("reconcile: %v", err)
		}
		time.Sleep(*interval)
	}
}

func reconcile(ctx context.Context, client kubernetes.Interface, provisioner, root string) error {
	classes, err := client.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ours := map[string]corev1.PersistentVolumeReclaimPolicy{}
	for _, sc := range classes.Items {
		if sc.Provisioner == provisioner {
			policy := corev1.PersistentVolumeReclaimDelete
			if sc.ReclaimPolicy != nil {
				policy = *sc.ReclaimPolicy
			}
			ours[sc.Name] = policy
		}
	}
	claims, err := client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			continue
		}
		if pvc.Spec.StorageClassName == nil {
			continue
		}
		policy, ok := ours[*pvc.Spec.StorageClassName]
		if !ok {
			continue
		}
		if err := provision(ctx, client, pvc, policy, provisioner, root); err != nil {
			log.Printf("provision %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	volumes, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, pv := range volumes.Items {
		if pv.Annotations[provisionedBy] != provisioner || pv.Status.Phase != corev1.VolumeReleased {
			continue
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			continue
		}
		if err := client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil &&
			!apierrors.IsNotFound(err) {
			log.Printf("delete %s: %v", pv.Name, err)
			continue
		}
		_ = os.RemoveAll(filepath.Join(root, pv.Name))
		log.Printf("deleted released volume %s", pv.Name)
	}
	return nil
}

func provision(ctx context.Context, client kubernetes.Interface, pvc *corev1.PersistentVolumeClaim,
	policy corev1.PersistentVolumeReclaimPolicy, provisioner, root string) error {
	name := fmt.Sprintf("pvc-%s", pvc.UID)
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	// With scripts/kube-node a real kubelet mounts the directory as is (hostPath ignores fsGroup):
	// let non-root pods write, as rancher's local-path-provisioner (kind's default class) does.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{provisionedBy: provisioner},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              *pvc.Spec.StorageClassName,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	_, err := client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		log.Printf("provisioned %s for %s/%s", name, pvc.Namespace, pvc.Name)
	}
	return err
}
