// The kernel's own count of connections a listen queue turned away, read
// from /proc/net/netstat (TcpExt) at scrape time: ListenOverflows (the
// accept queue was full) and ListenDrops (every drop at a listener, the
// overflows included). They count for the whole network namespace, not only
// this process's listeners: a burst that overflows any queue on the host is
// seen there. Any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace stallwatch::metrics {

struct ListenDropCounts {
  std::uint64_t overflows = 0;  // TcpExt ListenOverflows
  std::uint64_t drops = 0;      // TcpExt ListenDrops
};

// Parses the text of /proc/net/netstat (pairs of lines: "TcpExt: names…",
// "TcpExt: values…"); nullopt when either field is missing. Pure.
std::optional<ListenDropCounts> parse_listen_drops(std::string_view netstat);

// Reads /proc/net/netstat now; nullopt when it cannot be read or parsed.
std::optional<ListenDropCounts> read_listen_drops();

}  // namespace stallwatch::metrics
