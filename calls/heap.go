package calls

// callEntry is a heap entry: a record and an instant in Unix nanoseconds.
type callEntry struct {
	at  int64
	seq uint64
}

// callHeap is a min-heap by at, typed so that pushing boxes nothing.
type callHeap []callEntry

func (h *callHeap) push(e callEntry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h *callHeap) pop() callEntry {
	old := *h
	e := old[0]
	n := len(old) - 1
	old[0] = old[n]
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
	return e
}

func (h callHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h callHeap) less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].seq < h[j].seq
}

func (h callHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (h callHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
