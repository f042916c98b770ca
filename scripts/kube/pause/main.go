// pause is the sandbox ("infra") container of scripts/kube-node's pods: it holds the pod's
// namespaces, reaps orphaned children and exits cleanly on SIGINT/SIGTERM, like Kubernetes'
// own pause. Upstream ships it only as an image in a registry this machine cannot reach, so it
// is built here and packed into a one-file image (scripts/kube-node build).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
