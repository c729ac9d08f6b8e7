package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (the kernel fixes the value
// exported to user space, independent of CONFIG_HZ).
const clockTicks = 100

// ParseProcStatCPU returns utime+stime in seconds from the contents of
// /proc/PID/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted after the last ')'.
func ParseProcStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no ')' in %q", stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')': state(3) ppid(4) ... utime is field 14, stime field 15,
	// i.e. indices 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after comm", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: bad utime/stime %q %q", f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// ParseMachineCPU returns the busy CPU time of the whole machine in
// seconds from the contents of /proc/stat: the first ("cpu") line's user,
// nice, system, irq, softirq and steal; idle and iowait are not busy, and
// guest time is already inside user.
func ParseMachineCPU(stat []byte) (float64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("proc stat: first line %q is not the cpu total", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat: field %d %q: %w", i, f[i], err)
		}
		busy += v
	}
	return float64(busy) / clockTicks, nil
}

// MachineCPU is the machine's busy CPU seconds so far (/proc/stat).
func MachineCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return ParseMachineCPU(b)
}

// ParseVmRSS returns VmRSS in KiB from the contents of /proc/PID/status.
func ParseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "VmRSS" {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// ProcCPU returns the CPU time (user + system, seconds) of process pid,
// all threads included.
func ProcCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseProcStatCPU(b)
}

// ProcRSS returns the resident set size of process pid in KiB.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(b)
}

// gcLine matches a GODEBUG=gctrace=1 line: "gc 12 @0.345s 1%: ...".
var gcLine = regexp.MustCompile(`^gc (\d+) @`)

// LogWriter keeps a child process's output (bounded, for error reports)
// and counts the garbage collections reported by GODEBUG=gctrace=1. It is
// safe for concurrent use.
type LogWriter struct {
	mu      sync.Mutex
	partial []byte
	tail    []string // last lines, at most maxTail
	gcs     int64
	lastGC  int64 // highest cycle number seen
}

const maxTail = 200

func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a runaway line: keep it bounded
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func (w *LogWriter) line(s string) {
	if m := gcLine.FindStringSubmatch(s); m != nil {
		w.gcs++
		if n, err := strconv.ParseInt(m[1], 10, 64); err == nil && n > w.lastGC {
			w.lastGC = n
		}
		return // not worth keeping for error reports
	}
	w.tail = append(w.tail, s)
	if len(w.tail) > maxTail {
		w.tail = w.tail[len(w.tail)-maxTail:]
	}
}

// GCs returns the number of gctrace lines seen so far.
func (w *LogWriter) GCs() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gcs
}

// String returns the last lines of output (gctrace lines left out).
func (w *LogWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, "\n")
}
