#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <minimoe/plot/svg.hpp>
#include <minimoe/train/plots.hpp>

#include "../data/temp_dir.hpp"

using namespace minimoe;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("ticks are round numbers covering the range") {
  CHECK(detail::nice_ticks(0, 10) == std::vector<double>{0, 2, 4, 6, 8, 10});
  const std::vector<double> ticks = detail::nice_ticks(0.13, 0.61);
  REQUIRE(ticks.size() == 5);
  for (size_t i = 0; i < ticks.size(); ++i)
    CHECK(ticks[i] == doctest::Approx(0.2 + 0.1 * double(i)));
  CHECK(detail::nice_ticks(3, 3).size() == 1);
}

TEST_CASE("a line chart has one path per series, legends, and breaks at non-finite points") {
  LineChart c{"Loss <train>", "step", "nats", {}};
  c.series.push_back({"train & more", {0, 1, 2, 3}, {4, 3, NAN, 2}});
  c.series.push_back({"val", {0, 3}, {4.5, 2.5}});
  const std::string svg = render_svg(std::vector<LineChart>{c});
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(count(svg, "<path") == 2);
  CHECK(count(svg, " M") + count(svg, "\"M") == 3);  // the NaN starts a second segment
  CHECK(svg.find("Loss &lt;train&gt;") != std::string::npos);
  CHECK(svg.find("train &amp; more") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
}

TEST_CASE("a heatmap has a cell per value and labels every row and column") {
  Heatmap h{"routing", {"story", "code"}, {"e0", "e1", "e2"}, {{0.5, 0.25, 0.25}, {0.1, 0.1, 0.8}}};
  const std::string svg = render_svg(h);
  CHECK(count(svg, "<rect x=") == 6);
  CHECK(svg.find(">0.80<") != std::string::npos);
  CHECK(svg.find(">story<") != std::string::npos);
}

TEST_CASE("a heatmap is wide enough for a title longer than its cells") {
  const std::string title(120, 'x');
  Heatmap narrow{title, {"story"}, {"e0"}, {{1.0}}};
  const std::string svg = render_svg(narrow);
  const size_t at = svg.find("width=\"");
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(svg.substr(at + 7)) >= 9.0 * 120);
}

TEST_CASE("training plots are drawn from the metrics records") {
  test::TempDir dir;
  std::vector<nlohmann::json> records;
  for (int step = 0; step < 30; ++step)
    records.push_back({{"type", "train"},
                       {"step", step},
                       {"loss", 5.0 - 0.1 * step},
                       {"load", {{0.5, 0.5}, {0.25, 0.75}}}});
  records.push_back({{"type", "eval"}, {"step", 30}, {"val_loss", 2.5}});
  write_training_plots(records, dir.file(""));
  const std::string loss = read_file(dir.file("loss.svg"));
  const std::string load = read_file(dir.file("expert_load.svg"));
  CHECK(count(loss, "<path") == 2);
  CHECK(count(load, "<path") == 4);  // 2 layers x 2 experts
  CHECK(load.find("MoE layer 1") != std::string::npos);
}
