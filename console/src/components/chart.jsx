// A time-series chart drawn with uPlot on a <canvas>. Screen readers get the figure's
// caption and a summary (points, range, last value); the data is also in a table on the
// page that shows the chart. The width follows the container (phone widths too).
// uPlot is its own chunk, fetched when the first chart is drawn.
import { useEffect, useRef } from "preact/hooks";
import "uplot/dist/uPlot.min.css";

let uPlotModule = null;
const loadUplot = () => {
  uPlotModule ??= import("uplot").then((module) => module.default);
  return uPlotModule;
};

const COLORS = ["#1f5fbf", "#b3261e", "#1e7a3c", "#8a5a00"];

/**
 * `times`: epoch seconds; `series`: [{ label, values, color?, dash? }] (values aligned with
 * `times`, null for a gap); `summary`: the text read out instead of the picture;
 * `span`: [first, last] epoch seconds of the x axis (default: the data's own).
 */
export function TimeChart({ title, times, series, summary, span, height = 260, testId }) {
  const holder = useRef(null);

  useEffect(() => {
    const element = holder.current;
    if (!element || times.length === 0) return undefined;
    const width = () => Math.max(element.clientWidth, 240);
    const options = {
      width: width(),
      height,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: span ? { time: true, range: [span[0], span[1]] } : { time: true } },
      axes: [{ stroke: "#5b6470" }, { stroke: "#5b6470", size: 60 }],
      series: [
        {},
        ...series.map((line, index) => ({
          label: line.label,
          stroke: line.color ?? COLORS[index % COLORS.length],
          width: 2,
          dash: line.dash,
          spanGaps: false,
          points: { show: times.length < 60 },
        })),
      ],
    };
    let chart = null;
    let resize = null;
    let cancelled = false;
    loadUplot().then((uPlot) => {
      if (cancelled) return;
      chart = new uPlot(options, [times, ...series.map((line) => line.values)], element);
      resize = new ResizeObserver(() => chart.setSize({ width: width(), height }));
      resize.observe(element);
    });
    return () => {
      cancelled = true;
      resize?.disconnect();
      chart?.destroy();
    };
  }, [times, series, height, span?.[0], span?.[1]]);

  return (
    <figure class="chart" data-testid={testId}>
      <figcaption>{title}</figcaption>
      <div ref={holder} class="chart-canvas" role="img" aria-label={summary} />
    </figure>
  );
}
