"""The one pinned release of each control-plane component the test cluster runs."""

KUBERNETES = "1.37.2"
ETCD = "3.6.16"

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
