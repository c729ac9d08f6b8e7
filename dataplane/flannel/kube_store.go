package flannel

import (
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// nodeStore is the reflector's store: the Nodes by name (managed fields
// and image lists dropped: the peer table needs annotations, spec and
// addresses), each change handed to the member.
type nodeStore struct {
	cache.Store
	m      *KubeMember
	synced atomic.Bool // the first list is in
}

func slim(obj any) *v1.Node {
	n, ok := obj.(*v1.Node)
	if !ok {
		return nil
	}
	n.ManagedFields = nil
	n.Status.Images = nil
	return n
}

func (s *nodeStore) old(n *v1.Node) *v1.Node {
	if o, ok, _ := s.Store.GetByKey(n.Name); ok {
		return o.(*v1.Node)
	}
	return nil
}

func (s *nodeStore) Add(obj any) error { return s.Update(obj) }

func (s *nodeStore) Update(obj any) error {
	n := slim(obj)
	if n == nil {
		return nil
	}
	old := s.old(n)
	if err := s.Store.Update(n); err != nil {
		return err
	}
	s.m.nodeEvent(n, old)
	return nil
}

func (s *nodeStore) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	n, ok := obj.(*v1.Node)
	if !ok {
		return nil
	}
	if err := s.Store.Delete(n); err != nil {
		return err
	}
	s.m.nodeGone(n.Name)
	return nil
}

// Replace takes a full list: after the first, a resync after a watch that
// could not be resumed. Nodes missing from it are gone.
func (s *nodeStore) Replace(list []any, rv string) error {
	before := map[string]*v1.Node{}
	for _, o := range s.Store.List() {
		n := o.(*v1.Node)
		before[n.Name] = n
	}
	for i := range list {
		list[i] = slim(list[i])
	}
	if err := s.Store.Replace(list, rv); err != nil {
		return err
	}
	for _, o := range list {
		n := o.(*v1.Node)
		old := before[n.Name]
		delete(before, n.Name)
		s.m.nodeEvent(n, old)
	}
	for name := range before {
		s.m.nodeGone(name)
	}
	if s.synced.Swap(true) {
		s.m.st.Resyncs.Add(1)
		s.m.log.Info("Kubernetes API: Nodes listed again", "nodes", len(list))
	}
	return nil
}

func (s *nodeStore) Resync() error { return nil }
