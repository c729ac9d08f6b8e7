package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// SVG renders a grouped bar chart of single-stream TCP throughput: one
// group per scenario, one bar per offload setting, values on the bars.
// Failed or missing measurements draw no bar.
func (rep *Report) SVG() []byte {
	var scen []string
	var offs []bool
	seenS, seenO := map[string]bool{}, map[bool]bool{}
	val := map[string]float64{}
	for _, r := range rep.Results {
		if !seenS[r.Scenario] {
			seenS[r.Scenario] = true
			scen = append(scen, r.Scenario)
		}
		if !seenO[r.Offloads] {
			seenO[r.Offloads] = true
			offs = append(offs, r.Offloads)
		}
		if r.TCP1 != nil {
			val[r.Key()] = r.TCP1.Gbps()
		}
	}
	maxV := 0.0
	for _, v := range val {
		maxV = math.Max(maxV, v)
	}
	top, step := niceScale(maxV)

	const (
		left, right, topM, bottom = 70.0, 20.0, 60.0, 70.0
		groupW, plotH             = 130.0, 320.0
	)
	nb := math.Max(float64(len(offs)), 1)
	width := left + right + groupW*math.Max(float64(len(scen)), 1)
	height := topM + plotH + bottom
	barW := (groupW - 30) / nb
	colors := map[bool]string{true: "#3b78c2", false: "#e08a2c"}
	y := func(v float64) float64 { return topM + plotH - v/top*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%.1f" y="24" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n",
		width/2, esc("TCP, 1 stream (iperf3): Gbit/s per scenario"))
	// Legend.
	for i, o := range offs {
		lx := left + float64(i)*170
		fmt.Fprintf(&b, `<rect x="%.1f" y="36" width="12" height="12" fill="%s"/>`, lx, colors[o])
		fmt.Fprintf(&b, `<text x="%.1f" y="46">%s</text>`+"\n", lx+18, esc("veth offloads "+OffloadName(o)))
	}
	// Grid and y axis.
	for i := 0; i <= int(math.Round(top/step)); i++ {
		v := float64(i) * step
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`, left, y(v), width-right, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", left, topM, left, topM+plotH)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", left, topM+plotH, width-right, topM+plotH)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">Gbit/s</text>`+"\n", topM+plotH/2)
	// Bars.
	for gi, s := range scen {
		gx := left + float64(gi)*groupW + 15
		for bi, o := range offs {
			v, ok := val[s+"/"+OffloadName(o)]
			x := gx + float64(bi)*barW
			if !ok {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#999999">n/a</text>`+"\n", x+barW/2, topM+plotH-4)
				continue
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`,
				x+2, y(v), barW-4, topM+plotH-y(v), colors[o], esc(fmt.Sprintf("%s, offloads %s: %.2f Gbit/s", s, OffloadName(o), v)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%.2f</text>`+"\n", x+barW/2, y(v)-4, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", gx+(groupW-30)/2, topM+plotH+20, esc(s))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="#555555">%s</text>`+"\n",
		width/2, height-16, esc(fmt.Sprintf("%s, %d CPUs, %s, %.0f s per run", rep.Host.Kernel, rep.Host.CPUs, rep.Started.Format("2006-01-02 15:04"), rep.DurationSec)))
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// WriteSVG writes the chart, creating the directory.
func (rep *Report) WriteSVG(path string) error { return writeFile(path, rep.SVG()) }

func esc(s string) string { return html.EscapeString(s) }

// niceScale returns an axis maximum >= v and a tick step of 1, 2 or 5
// times a power of ten, giving about five ticks.
func niceScale(v float64) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 0.2
	}
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			step = m * p
			break
		}
	}
	top = math.Ceil(v/step) * step
	if top < v*1.08 { // room for the value labels
		top += step
	}
	return top, step
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
