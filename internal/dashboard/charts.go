package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strconv"

	"github.com/go-analyze/charts"
)

// Series is one named line of a chart; Values align with the chart's x
// labels (NaN: no value at that point).
type Series struct {
	Name   string
	Values []float64
}

// Chart is an SVG chart ready for a template; Empty says why there is no
// chart yet.
type Chart struct {
	Title string
	SVG   template.HTML
	Empty string
}

// maxSeries bounds the lines of one chart (the rest are left out and the
// title says so), so a 256-uid subnet still draws a readable chart.
const maxSeries = 12

const chartW, chartH = 720, 300

// lineChart renders series over the x labels (blocks) as an inline SVG.
func lineChart(title string, x []string, series []Series, unit string) Chart {
	c := Chart{Title: title}
	if len(x) < 2 || len(series) == 0 {
		c.Empty = "not enough data yet: the chart appears after two samples"
		return c
	}
	if len(series) > maxSeries {
		c.Title = fmt.Sprintf("%s (first %d of %d)", title, maxSeries, len(series))
		series = series[:maxSeries]
	}
	vals := make([][]float64, len(series))
	names := make([]string, len(series))
	for i, s := range series {
		names[i] = s.Name
		vals[i] = make([]float64, len(x))
		for j := range x {
			v := math.NaN()
			if j < len(s.Values) {
				v = s.Values[j]
			}
			if math.IsNaN(v) {
				v = charts.GetNullValue()
			}
			vals[i][j] = v
		}
	}
	opt := charts.NewLineChartOptionWithData(vals)
	opt.XAxis.Labels = x
	opt.Legend = charts.LegendOption{SeriesNames: names, Offset: charts.OffsetRight}
	opt.Symbol = charts.Symbol{Shape: charts.SymbolNone}
	opt.ValueFormatter = valueFormatter(unit)
	return render(c, func(p *charts.Painter) error { return p.LineChart(opt) })
}

// stackedBars renders counts stacked per x label as an inline SVG.
func stackedBars(title string, x []string, series []Series) Chart {
	c := Chart{Title: title}
	if len(x) == 0 || len(series) == 0 {
		c.Empty = "no results yet"
		return c
	}
	vals := make([][]float64, len(series))
	names := make([]string, len(series))
	for i, s := range series {
		names[i], vals[i] = s.Name, s.Values
	}
	opt := charts.NewBarChartOptionWithData(vals)
	opt.StackSeries = charts.Ptr(true)
	opt.CategoryAxis.Labels = x
	opt.Legend = charts.LegendOption{SeriesNames: names, Offset: charts.OffsetRight}
	return render(c, func(p *charts.Painter) error { return p.BarChart(opt) })
}

func render(c Chart, draw func(*charts.Painter) error) Chart {
	p := charts.NewPainter(charts.PainterOptions{OutputFormat: charts.ChartOutputSVG, Width: chartW, Height: chartH})
	if err := draw(p); err != nil {
		c.Empty = "chart unavailable: " + err.Error()
		return c
	}
	b, err := p.Bytes()
	if err != nil {
		c.Empty = "chart unavailable: " + err.Error()
		return c
	}
	// The library escapes every text it writes (labels, legend), so the
	// SVG is safe to embed as it is.
	c.SVG = template.HTML(b)
	return c
}

func valueFormatter(unit string) charts.ValueFormatter {
	return func(f float64) string {
		switch unit {
		case "tao":
			return strconv.FormatFloat(f, 'f', 3, 64)
		default:
			return strconv.FormatFloat(f, 'f', 2, 64)
		}
	}
}
