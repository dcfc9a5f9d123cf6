// minimoe/plot/svg.hpp: line charts and heatmaps as standalone SVG files, no Python needed.
//
//   LineChart chart{"loss", "step", "nats"};
//   chart.series.push_back({"train", steps, losses});
//   chart.series.push_back({"val", eval_steps, val_losses});
//   write_svg("run/loss.svg", {chart});                  // charts stacked vertically
//
//   Heatmap h{"routing", row_labels, column_labels, values};   // values[row][column]
//   write_svg("run/routing.svg", h);
//
// Axes get "nice" ticks (1, 2, 5 x 10^k), non-finite points break a line, and every text is
// XML-escaped, so labels taken from data (domain names) cannot break the file.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "minimoe/io/atomic_file.hpp"

namespace minimoe {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  double width = 720, height = 360;
};

struct Heatmap {
  std::string title;
  std::vector<std::string> rows, columns;
  std::vector<std::vector<double>> values;  // [rows][columns], shown on a 0..max scale
  std::string value_format = "{:.2f}";
};

namespace detail {

inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A palette that stays distinguishable for the first ten series (Tableau 10).
inline const char* series_color(size_t i) {
  static const char* const colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                       "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return colors[i % 10];
}

// Tick positions covering [lo, hi] with about `target` steps of 1, 2 or 5 x 10^k.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * magnitude) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;  // k * step, not a running sum: no accumulated rounding
  for (auto k = static_cast<int64_t>(std::ceil(lo / step)); double(k) * step <= hi + step * 1e-9;
       ++k)
    ticks.push_back(double(k) * step);
  return ticks;
}

inline std::string tick_label(double v) { return fmt::format("{:.4g}", v); }

// One chart as an SVG group, drawn in a box of the chart's size at (0, top).
inline std::string chart_group(const LineChart& c, double top) {
  const double left = 64, right = 150, margin_top = 30, bottom = 44;
  const double w = c.width - left - right, h = c.height - margin_top - bottom;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const Series& s : c.series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        x0 = std::min(x0, s.x[i]);
        x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, s.y[i]);
        y1 = std::max(y1, s.y[i]);
      }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.04 * (y1 - y0);
  y0 -= pad;
  y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * w; };
  auto py = [&](double y) { return top + margin_top + (1.0 - (y - y0) / (y1 - y0)) * h; };

  std::string g =
      fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>\n", left,
                  top + 20, xml_escape(c.title));
  g += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", left,
      top + margin_top, w, h);
  for (double t : nice_ticks(x0, x1))
    g += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#eee\"/>"
        "<text x=\"{0:.1f}\" y=\"{3:.1f}\" font-size=\"11\" text-anchor=\"middle\">{4}</text>\n",
        px(t), top + margin_top, top + margin_top + h, top + margin_top + h + 15, tick_label(t));
  for (double t : nice_ticks(y0, y1))
    g += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#eee\"/>"
        "<text x=\"{3:.1f}\" y=\"{4:.1f}\" font-size=\"11\" text-anchor=\"end\">{5}</text>\n",
        left, py(t), left + w, left - 6, py(t) + 4, tick_label(t));
  g += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n",
                   left + w / 2, top + c.height - 8, xml_escape(c.x_label));
  g += fmt::format(
      "<text x=\"14\" y=\"{0}\" font-size=\"12\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 14 {0})\">{1}</text>\n",
      top + margin_top + h / 2, xml_escape(c.y_label));
  for (size_t k = 0; k < c.series.size(); ++k) {
    const Series& s = c.series[k];
    std::string path;
    bool pen_down = false;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        pen_down = false;
        continue;
      }
      path += fmt::format("{}{:.1f},{:.1f} ", pen_down ? "L" : "M", px(s.x[i]), py(s.y[i]));
      pen_down = true;
    }
    g += fmt::format(
        "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n"
        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/>"
        "<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>\n",
        path, series_color(k), left + w + 12, top + margin_top + 8 + 18 * double(k),
        series_color(k), left + w + 30, top + margin_top + 13 + 18 * double(k), xml_escape(s.name));
  }
  return g;
}

inline std::string svg_document(double width, double height, const std::string& body) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{2}</svg>\n",
      width, height, body);
}

}  // namespace detail

// Charts stacked vertically in one document.
inline std::string render_svg(const std::vector<LineChart>& charts) {
  std::string body;
  double top = 0, width = 0;
  for (const LineChart& c : charts) {
    body += detail::chart_group(c, top);
    top += c.height;
    width = std::max(width, c.width);
  }
  return detail::svg_document(width, top, body);
}

inline std::string render_svg(const Heatmap& m) {
  const double cell_w = 56, cell_h = 24, left = 160, top = 40;
  // Wide enough for the title too: about 9 px a character of the 15 px bold font.
  const double width =
      std::max(left + cell_w * double(m.columns.size()) + 20, 20 + 9.0 * double(m.title.size()));
  const double height = top + cell_h * double(m.rows.size()) + 20;
  double max_value = 0;
  for (const auto& row : m.values)
    for (double v : row)
      if (std::isfinite(v)) max_value = std::max(max_value, v);
  std::string body =
      fmt::format("<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                  detail::xml_escape(m.title));
  for (size_t c = 0; c < m.columns.size(); ++c)
    body +=
        fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n",
                    left + cell_w * (double(c) + 0.5), top - 6, detail::xml_escape(m.columns[c]));
  for (size_t r = 0; r < m.rows.size(); ++r) {
    const double y = top + cell_h * double(r);
    body += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>\n",
                        left - 8, y + 16, detail::xml_escape(m.rows[r]));
    for (size_t c = 0; c < m.columns.size(); ++c) {
      const double v = r < m.values.size() && c < m.values[r].size() ? m.values[r][c] : NAN;
      const double t = std::isfinite(v) && max_value > 0 ? v / max_value : 0;
      // White to dark blue; the label turns white where the cell is dark.
      const int shade = static_cast<int>(std::lround(255 - 200 * t));
      body += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"rgb({},{},255)\" "
          "stroke=\"white\"/><text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" "
          "text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
          left + cell_w * double(c), y, cell_w, cell_h, shade, shade,
          left + cell_w * (double(c) + 0.5), y + 16, t > 0.6 ? "white" : "black",
          std::isfinite(v) ? fmt::format(fmt::runtime(m.value_format), v) : "-");
    }
  }
  return detail::svg_document(width, height, body);
}

// Written atomically: a reader never sees half a figure.
inline void write_svg(const std::string& path, const std::vector<LineChart>& charts) {
  const std::string svg = render_svg(charts);
  write_file_atomically(path, [&](std::ostream& out) { out << svg; });
}

inline void write_svg(const std::string& path, const Heatmap& heatmap) {
  const std::string svg = render_svg(heatmap);
  write_file_atomically(path, [&](std::ostream& out) { out << svg; });
}

}  // namespace minimoe
