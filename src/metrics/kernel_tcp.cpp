#include "metrics/kernel_tcp.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace stallwatch::metrics {
namespace {

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < line.size()) {
    const std::size_t start = line.find_first_not_of(' ', pos);
    if (start == std::string_view::npos) break;
    const std::size_t end = std::min(line.find(' ', start), line.size());
    out.push_back(line.substr(start, end - start));
    pos = end;
  }
  return out;
}

}  // namespace

std::optional<ListenDropCounts> parse_listen_drops(std::string_view netstat) {
  std::vector<std::string_view> lines;
  while (!netstat.empty()) {
    const std::size_t end = std::min(netstat.find('\n'), netstat.size());
    lines.push_back(netstat.substr(0, end));
    netstat.remove_prefix(std::min(end + 1, netstat.size()));
  }
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    if (!lines[i].starts_with("TcpExt:") || !lines[i + 1].starts_with("TcpExt:")) continue;
    const std::vector<std::string_view> names = words(lines[i]);
    const std::vector<std::string_view> values = words(lines[i + 1]);
    if (names.size() != values.size()) return std::nullopt;
    std::optional<std::uint64_t> overflows;
    std::optional<std::uint64_t> drops;
    for (std::size_t k = 1; k < names.size(); ++k) {
      std::uint64_t value = 0;
      const auto [ptr, ec] = std::from_chars(values[k].data(), values[k].data() + values[k].size(), value);
      if (ec != std::errc{} || ptr != values[k].data() + values[k].size()) continue;
      if (names[k] == "ListenOverflows") overflows = value;
      if (names[k] == "ListenDrops") drops = value;
    }
    if (!overflows || !drops) return std::nullopt;
    return ListenDropCounts{*overflows, *drops};
  }
  return std::nullopt;
}

std::optional<ListenDropCounts> read_listen_drops() {
  std::ifstream in("/proc/net/netstat");
  if (!in) return std::nullopt;
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return parse_listen_drops(text);
}

}  // namespace stallwatch::metrics
