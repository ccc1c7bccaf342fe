"""A node agent for the test cluster: registers one Node and runs its pods as local processes.

    python -m testcluster.nodeagent --kubeconfig K --node-name N --bridge pil<N>br \\
        --pod-cidr 10.244.N.0/24 --service-cidr 10.96.N.0/24 --apiserver 127.0.0.1:PORT \\
        --state-dir D --venv V [--cluster-dns-domain cluster.local] [--log F]
    python -m testcluster.nodeagent cleanup --bridge pil<N>br --state-dir D

Test-only. What it does, and what a kubelet does that it does not:

* **Node**: registered Ready with capacity/allocatable (cpu, memory, pods), InternalIP
  (the bridge address 10.244.N.1) and podCIDR; a Lease in kube-node-lease and the node
  status are renewed every 10 s.
* **Pods** bound to the node (watch with fieldSelector spec.nodeName, resumed on
  resourceVersion, relisted on 410 Gone) run as processes. Images are never pulled: an image
  `*/pilotage-operator|server|trainer:*` runs the `pilotage` of the project's virtualenv
  with the Dockerfile's ENTRYPOINT/CMD, USER 10001:10001, WORKDIR /tmp and ENV; a `command`
  starting with `pilotage`, `python` or `python3` runs the virtualenv's binary, any other
  command runs the host's (the image has a shell and coreutils too). Any other image leaves
  the container waiting with reason `ImageNotRunnable` and a message naming the image.
  env (value, `$(VAR)` expansion, Secret/ConfigMap key refs, fieldRef, envFrom), workingDir,
  runAsUser/runAsGroup/supplementalGroups (set for real before exec), fsGroup (group-owns
  the volumes), init containers, startup/readiness/liveness probes (httpGet, tcpSocket, exec via
  nsenter; not grpc), termination message (terminationMessagePath, FallbackToLogsOnError),
  exit codes, restarts per restartPolicy with backoff 1 s doubling to 30 s (the kubelet:
  10 s to 5 min), graceful deletion (SIGTERM to the process group, SIGKILL after the grace
  period, then the pod is deleted with gracePeriodSeconds=0 as the kubelet does).
  Not enforced: resource limits (the cgroups of this machine belong to the sandbox),
  readOnlyRootFilesystem, capabilities, seccomp,
  allowPrivilegeEscalation, lifecycle hooks. ConfigMap, Secret and
  downward API files are refreshed in place every 5 s, as the kubelet's sync does; a
  service-account token is requested again at 80 % of its lifetime. Past a pod's
  activeDeadlineSeconds its containers are stopped and it fails (DeadlineExceeded).
* **Volumes**: ConfigMap, Secret, emptyDir, downwardAPI and projected (serviceAccountToken
  by the TokenRequest API bound to the pod, kube-root-ca.crt, namespace) as files under
  `<state>/pods/<ns>_<pod>_<uid>/volumes/`; a PVC is the host directory
  `<state>/pvc/<ns>/<claim>`, and the agent is the provisioner: a pending claim gets a
  PV pre-bound to it with that directory as hostPath (Retain); hostPath volumes as is.
* **Logs**: `<state>/pods/<ns>_<pod>_<uid>/<container>.log` (stdout and stderr, restarts
  appended). `kubectl logs` (pods/log: current or --previous run, --tail, -f) works through
  `kubeletapi.py`, the one kubelet endpoint served (HTTPS on the node's InternalIP, its
  port in the Node's daemonEndpoints); `kubectl exec`, attach and port-forward do not.
* **Isolation**: each container is started by `launch.py`, which joins the pod's network
  namespace, unshares a private mount namespace and a UTS namespace (hostname: the
  pod's hostname or name), binds the pod's hosts and resolv.conf over
  /etc/hosts and /etc/resolv.conf and the volumes onto their mountPaths, then drops to the
  container's user and execs. A mountPath missing on the host is never created there: its
  nearest existing ancestor is shadowed inside the mount namespace by a tmpfs holding bind
  mounts of its entries (for `/` the shadow becomes the container's root by chroot), and the
  missing directories are made on that tmpfs. /root (0700, it holds pyenv's Python) is
  shadowed the same way with o+x so that a non-root container can run the interpreter.
  Nothing is mounted in the host's mount namespace.
* **Network**: per pod a network namespace `<p>-p<x>` and a veth pair (`<p>-h<x>` on the
  bridge, eth0 10.244.N.x/24 in the pod, default route via 10.244.N.1), where `<p>` is the
  bridge name without `br` (e.g. `pil3`), so two clusters on one machine never share a name.
* **Services** without kube-proxy: this sandbox has no iptables/nftables binaries (and no
  `dummy` link type), so there is no DNAT. Each ClusterIP is added as a /32 to the bridge and
  the agent listens on ClusterIP:port (IP_FREEBIND) with an asyncio TCP proxy to the
  Service's ready endpoints (EndpointSlices; round robin; an endpoint that refuses is
  skipped). `default/kubernetes` forwards to the API server (--apiserver), which listens on
  127.0.0.1 only. A NodePort listens on the node's InternalIP (10.244.N.1). TCP only;
  no session affinity; the client address seen by the backend is the proxy's.
* **DNS** without a DNS server: `/etc/netns/<ns>/hosts` (bound over the pod's /etc/hosts) is
  rewritten in place whenever Services or EndpointSlices change: `svc.ns.svc.<domain>`,
  `svc.ns.svc`, `svc.ns`, plain `svc` for the pod's own namespace (headless Services: their
  ready endpoint addresses), and the pod's hostname. resolv.conf has the usual search list
  and `nameserver 127.0.0.1`, which answers nothing inside the pod's namespace, so no lookup
  leaks out. In-cluster config: KUBERNETES_SERVICE_HOST=10.96.N.1, KUBERNETES_SERVICE_PORT=443
  and the Docker-link variables of the namespace's Services.
* **Cleanup** (`cleanup`, and the agent itself on SIGTERM/SIGINT): kills the recorded
  container process groups and every process in the agent's network namespaces, deletes
  those namespaces, the links and /etc/netns dirs with the prefix, and flushes the bridge's
  addresses. It works after a SIGKILL of the agent. Logs and PVC directories stay in the
  state directory.
"""
