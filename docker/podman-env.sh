# Podman settings for scripts/image-build and scripts/image-smoke (sourced, not executed).
# Private config and storage keep the project away from any system-wide /etc/containers and
# /var/lib/containers. Measured on Debian 12 without systemd (shared/notes/containers-with-podman):
# crun fails on hybrid cgroups, so runc; the default ulimits cannot be set without
# CAP_SYS_RESOURCE, so explicit ones.
PODMAN_WORK=${FC_PODMAN_WORK:-$HOME/.cache/fashion-classifier/podman}
# The tag changes whenever scripts/image-build changes how the base is made.
BASE_IMAGE=localhost/fc-base-bookworm-python:r3
SERVE_IMAGE=localhost/fashion-classifier:${FC_IMAGE_TAG:-0.1.0}
TRAIN_IMAGE=localhost/fashion-classifier-train:${FC_IMAGE_TAG:-0.1.0}
# Cassandra from the Maven jars (docker/cassandra), on a Debian base with only the JRE; tagged with
# the cassandra-all version that scripts/cassandra/pom.xml pins.
JRE_BASE_IMAGE=localhost/fc-base-bookworm-jre17:r1
CASSANDRA_VERSION=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' \
  "$(dirname "${BASH_SOURCE[0]}")/../scripts/cassandra/pom.xml")
CASSANDRA_IMAGE=localhost/fashion-classifier-cassandra:$CASSANDRA_VERSION

mkdir -p "$PODMAN_WORK/conf" "$PODMAN_WORK/networks"
cat > "$PODMAN_WORK/conf/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
[network]
network_config_dir = "$PODMAN_WORK/networks"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_WORK/events.log"
runtime = "runc"
tmp_dir = "$PODMAN_WORK/libpod-tmp"
CONF
cat > "$PODMAN_WORK/conf/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$PODMAN_WORK/storage"
runroot = "$PODMAN_WORK/run"
CONF
export CONTAINERS_CONF=$PODMAN_WORK/conf/containers.conf
export CONTAINERS_STORAGE_CONF=$PODMAN_WORK/conf/storage.conf
