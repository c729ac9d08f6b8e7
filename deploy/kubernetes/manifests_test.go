package kubernetes_test

// The manifests in this directory, decoded strictly as the API server
// would take them (k8s.io/api types; an unknown or duplicate field is an
// error), and checked for what tunneld needs to run as a flannel node: its
// RBAC, host network, capabilities, /dev/net/tun, /run/flannel, the node
// name, and a tunneld.yaml that tunneld's own config package accepts.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"tunnelplane/dataplane/config"
)

const (
	namespace  = "tunnelplane"
	exampleIP  = "10.99.0.7" // what render-config puts in for @NODE_IP@
	nodeIPMark = "@NODE_IP@"
)

// decoder decodes the API groups the manifests use, in strict mode.
func decoder(tb testing.TB) runtime.Decoder {
	tb.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(scheme); err != nil {
			tb.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll returns every object of the YAML stream data, decoded strictly.
func decodeAll(tb testing.TB, dec runtime.Decoder, name string, data []byte) ([]runtime.Object, error) {
	tb.Helper()
	var objs []runtime.Object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil { // strict errors come with an object; they are still errors
			return nil, &docError{name, i, err}
		}
		if gvk.Empty() {
			return nil, &docError{name, i, errors.New("no apiVersion/kind")}
		}
		objs = append(objs, obj)
	}
}

type docError struct {
	file string
	doc  int
	err  error
}

func (e *docError) Error() string {
	return e.file + ": document " + strconv.Itoa(e.doc+1) + ": " + e.err.Error()
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// manifests is every object of every *.yaml file here.
type manifests struct {
	ns      []*corev1.Namespace
	sa      []*corev1.ServiceAccount
	cm      []*corev1.ConfigMap
	ds      []*appsv1.DaemonSet
	roles   []*rbacv1.ClusterRole
	binding []*rbacv1.ClusterRoleBinding
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests here: %v", err)
	}
	dec := decoder(t)
	var m manifests
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(t, dec, f, data)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", f)
		}
		for _, o := range objs {
			switch o := o.(type) {
			case *corev1.Namespace:
				m.ns = append(m.ns, o)
			case *corev1.ServiceAccount:
				m.sa = append(m.sa, o)
			case *corev1.ConfigMap:
				m.cm = append(m.cm, o)
			case *appsv1.DaemonSet:
				m.ds = append(m.ds, o)
			case *rbacv1.ClusterRole:
				m.roles = append(m.roles, o)
			case *rbacv1.ClusterRoleBinding:
				m.binding = append(m.binding, o)
			default:
				t.Errorf("%s: unexpected object %T", f, o)
			}
		}
	}
	if len(m.ns) != 1 || len(m.sa) != 1 || len(m.cm) != 1 || len(m.ds) != 1 || len(m.roles) != 1 || len(m.binding) != 1 {
		t.Fatalf("want one each of Namespace, ServiceAccount, ConfigMap, DaemonSet, ClusterRole, ClusterRoleBinding; got %d %d %d %d %d %d",
			len(m.ns), len(m.sa), len(m.cm), len(m.ds), len(m.roles), len(m.binding))
	}
	return m
}

// Strict means strict: a misspelt field is an error, not silently dropped.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	dec := decoder(t)
	bad := []byte("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n      containers: []\n")
	if _, err := decodeAll(t, dec, "bad.yaml", bad); err == nil || !strings.Contains(err.Error(), "hostNetwrok") {
		t.Fatalf("unknown field accepted: %v", err)
	}
	dup := []byte("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x, name: y}\n")
	if _, err := decodeAll(t, dec, "dup.yaml", dup); err == nil {
		t.Fatalf("duplicate field accepted")
	}
}

func TestRBAC(t *testing.T) {
	m := load(t)
	if m.ns[0].Name != namespace || m.ns[0].Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s labels %v: want %s admitting privileged pods", m.ns[0].Name, m.ns[0].Labels, namespace)
	}
	sa := m.sa[0]
	if sa.Namespace != namespace {
		t.Errorf("ServiceAccount in %q, want %q", sa.Namespace, namespace)
	}
	// Exactly flanneld's node rights, nothing more.
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
	}
	role := m.roles[0]
	if !reflect.DeepEqual(role.Rules, want) {
		t.Errorf("ClusterRole rules %+v, want %+v", role.Rules, want)
	}
	b := m.binding[0]
	if b.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}) {
		t.Errorf("ClusterRoleBinding roleRef %+v, want ClusterRole %s", b.RoleRef, role.Name)
	}
	if len(b.Subjects) != 1 || b.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}) {
		t.Errorf("ClusterRoleBinding subjects %+v, want the ServiceAccount %s/%s", b.Subjects, sa.Namespace, sa.Name)
	}
	if got := m.ds[0].Spec.Template.Spec.ServiceAccountName; got != sa.Name {
		t.Errorf("DaemonSet runs as ServiceAccount %q, want %q", got, sa.Name)
	}
}

func TestDaemonSet(t *testing.T) {
	m := load(t)
	ds := m.ds[0]
	if ds.Namespace != namespace {
		t.Errorf("DaemonSet in %q, want %q", ds.Namespace, namespace)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the template's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Errorf("hostNetwork is false: tunneld must program the node's own network")
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", pod.PriorityClassName)
	}
	if pod.NodeSelector["tunnelplane.io/tunneld"] != "true" {
		t.Errorf("nodeSelector %v: want the tunnelplane.io/tunneld=true nodes only", pod.NodeSelector)
	}
	tolerated := false
	for _, tol := range pod.Tolerations {
		tolerated = tolerated || tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == corev1.TaintEffectNoSchedule
	}
	if !tolerated {
		t.Errorf("tolerations %+v: want every NoSchedule taint tolerated (the node is not ready before its network)", pod.Tolerations)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if c.Image == "" {
			t.Errorf("container %s has no image", c.Name)
		}
		for _, vm := range c.VolumeMounts {
			if _, ok := vols[vm.Name]; !ok {
				t.Errorf("container %s mounts volume %q, which the pod does not have", c.Name, vm.Name)
			}
		}
	}
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "tunneld" {
		t.Fatalf("containers %d: want one, tunneld", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("tunneld has no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("tunneld runs privileged; NET_ADMIN and NET_RAW are enough")
	}
	for _, cap := range []corev1.Capability{"NET_ADMIN", "NET_RAW"} {
		if !slices.Contains(sc.Capabilities.Add, cap) {
			t.Errorf("capabilities.add %v lacks %s", sc.Capabilities.Add, cap)
		}
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("capabilities.drop %v: want ALL (then add what tunneld needs)", sc.Capabilities.Drop)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	hostPath := func(mountPath, path string, typ corev1.HostPathType) {
		t.Helper()
		vm, ok := mounts[mountPath]
		if !ok {
			t.Errorf("tunneld does not mount %s", mountPath)
			return
		}
		hp := vols[vm.Name].HostPath
		if hp == nil || hp.Path != path || hp.Type == nil || *hp.Type != typ {
			t.Errorf("%s: volume %s is %+v, want hostPath %s of type %s", mountPath, vm.Name, vols[vm.Name].VolumeSource, path, typ)
		}
		if vm.ReadOnly {
			t.Errorf("%s is mounted read-only", mountPath)
		}
	}
	hostPath("/dev/net/tun", "/dev/net/tun", corev1.HostPathCharDev)
	hostPath("/run/flannel", "/run/flannel", corev1.HostPathDirectoryOrCreate)

	nodeName := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" {
			nodeName = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		}
	}
	if !nodeName {
		t.Errorf("tunneld has no NODE_NAME from the downward API (spec.nodeName): %+v", c.Env)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Host != "127.0.0.1" {
		t.Errorf("liveness probe %+v: want GET /healthz on 127.0.0.1 (tunneld's listener is on loopback)", p)
	}
	// The config tunneld reads is the rendered one, and the ConfigMap
	// feeds both the renderer and net-conf.json.
	if !slices.Contains(c.Args, "/etc/tunnelplane/tunneld.yaml") || mounts["/etc/tunnelplane"].Name == "" {
		t.Errorf("tunneld args %v, mounts %v: want --config /etc/tunnelplane/tunneld.yaml from a mounted volume", c.Args, c.VolumeMounts)
	}
	if vm := mounts["/etc/kube-flannel/net-conf.json"]; vm.SubPath != "net-conf.json" || vols[vm.Name].ConfigMap == nil || vols[vm.Name].ConfigMap.Name != m.cm[0].Name {
		t.Errorf("net-conf.json mount %+v: want subPath net-conf.json of ConfigMap %s", vm, m.cm[0].Name)
	}
	var render *corev1.Container
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == "render-config" {
			render = &pod.InitContainers[i]
		}
	}
	if render == nil {
		t.Fatalf("no render-config init container")
	}
	script := strings.Join(append(slices.Clone(render.Command), render.Args...), " ")
	if !strings.Contains(script, nodeIPMark) || !strings.Contains(script, "/etc/tunnelplane/tunneld.yaml") {
		t.Errorf("render-config runs %q: want %s replaced into /etc/tunnelplane/tunneld.yaml", script, nodeIPMark)
	}
	if len(render.Env) != 1 || render.Env[0].ValueFrom == nil || render.Env[0].ValueFrom.FieldRef == nil || render.Env[0].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("render-config env %+v: want NODE_IP from status.hostIP", render.Env)
	}
}

func TestConfigMap(t *testing.T) {
	m := load(t)
	cm := m.cm[0]
	if cm.Namespace != namespace {
		t.Errorf("ConfigMap in %q, want %q", cm.Namespace, namespace)
	}
	// net-conf.json: flannel's format, the same as the example beside.
	var netConf struct {
		Network string
		Backend struct{ Type string }
	}
	if err := json.Unmarshal([]byte(cm.Data["net-conf.json"]), &netConf); err != nil {
		t.Fatalf("net-conf.json: %v", err)
	}
	if netConf.Network != "10.244.0.0/16" || netConf.Backend.Type != "vxlan" {
		t.Errorf("net-conf.json %+v, want 10.244.0.0/16 over vxlan", netConf)
	}
	example, err := os.ReadFile("../net-conf.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(example)) != strings.TrimSpace(cm.Data["net-conf.json"]) {
		t.Errorf("deploy/net-conf.json and the ConfigMap's net-conf.json differ")
	}
	var cni map[string]any
	if err := json.Unmarshal([]byte(cm.Data["cni-conf.json"]), &cni); err != nil {
		t.Errorf("cni-conf.json: %v", err)
	}

	raw := cm.Data["tunneld.yaml"]
	if !strings.Contains(raw, nodeIPMark) {
		t.Fatalf("tunneld.yaml has no %s for render-config", nodeIPMark)
	}
	rendered := strings.ReplaceAll(raw, nodeIPMark, exampleIP)
	c, err := config.Parse("tunneld-cfg/tunneld.yaml", []byte(rendered))
	if err != nil {
		t.Fatalf("tunneld.yaml does not parse:\n%v", err)
	}
	if c.PeersFrom != config.PeersFromFlannel || c.Flannel.SubnetManager != config.SubnetManagerKube {
		t.Errorf("peers_from %q subnet_manager %q, want flannel and kube", c.PeersFrom, c.Flannel.SubnetManager)
	}
	if c.Flannel.SubnetFile != "/run/flannel/subnet.env" {
		t.Errorf("subnet_file %q, want /run/flannel/subnet.env (the DaemonSet's hostPath)", c.Flannel.SubnetFile)
	}
	if c.Flannel.NetConf != "/etc/kube-flannel/net-conf.json" || c.Flannel.Kubeconfig != "" || c.Flannel.NodeName != "" {
		t.Errorf("flannel %+v: want net_conf at the pod's mount, the in-cluster config and $NODE_NAME", c.Flannel)
	}
	if c.Underlay.Local.String() != exampleIP {
		t.Errorf("underlay.local %s, want the rendered %s", c.Underlay.Local, exampleIP)
	}
	if got := config.FlannelBackend(c.Encap.Type); got != strings.ToLower(netConf.Backend.Type) {
		t.Errorf("encap speaks flannel backend %q, net-conf.json says %q", got, netConf.Backend.Type)
	}
	if c.Metrics.Listen != "127.0.0.1:9109" || c.Metrics.PProf {
		t.Errorf("metrics %+v: want 127.0.0.1:9109 (the liveness probe's) without pprof", c.Metrics)
	}
	// What --print-config shows must carry the net-conf path the pod mounts.
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "/etc/kube-flannel/net-conf.json") {
		t.Errorf("the effective config lost flannel.net_conf:\n%s", out)
	}
}

// The image definition builds the static binary privs.Drop needs.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile("../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/tunneld", "ENTRYPOINT [\"/usr/local/bin/tunneld\"]"} {
		if !strings.Contains(s, want) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}
}
