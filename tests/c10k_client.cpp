// Load client for the C10K test: opens N keep-alive connections to the demo,
// holds them all open for the given time while each sends GET / about once a
// second, and counts every error. One stallwatch loop, one fiber per
// connection. Exit status 0 only with zero errors and all N open at once.
//
//   c10k_client --port 8080 --connections 10000 --seconds 60
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <stallwatch/errors.hpp>
#include <stallwatch/loop.hpp>
#include <stallwatch/net.hpp>

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

struct Settings {
  std::uint16_t port = 8080;
  int connections = 10'000;
  int seconds = 60;
  int connect_per_second = 2'000;
};

struct Totals {
  int open = 0;
  int peak_open = 0;
  int connected = 0;
  long requests = 0;
  long errors = 0;
  std::string first_error;
};

void count_error(Totals& totals, const std::string& what) {
  if (totals.errors++ == 0) totals.first_error = what;
}

// Reads one response; true when it is "200" with body "hello".
bool read_hello(sw::TcpStream& conn, std::string& buffer) {
  const auto deadline = sw::deadline_after(30s);
  std::size_t head_end;
  char chunk[1024];
  while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    const std::size_t n = conn.read_some(chunk, sizeof chunk, deadline);
    if (n == 0) throw sw::end_of_stream("server closed the connection");
    buffer.append(chunk, n);
  }
  const std::string_view head(buffer.data(), head_end);
  const std::size_t cl = head.find("Content-Length: ");
  if (cl == std::string_view::npos) return false;
  std::size_t length = 0;
  std::from_chars(head.data() + cl + 16, head.data() + head.size(), length);
  const std::size_t total = head_end + 4 + length;
  while (buffer.size() < total) {
    const std::size_t n = conn.read_some(chunk, sizeof chunk, deadline);
    if (n == 0) throw sw::end_of_stream("server closed mid-body");
    buffer.append(chunk, n);
  }
  const bool ok = head.starts_with("HTTP/1.1 200 ") && std::string_view(buffer).substr(head_end + 4, length) == "hello";
  buffer.erase(0, total);
  return ok;
}

void hold_connection(int index, const Settings& s, Totals& totals, sw::Clock::time_point& hold_until) {
  sw::sleep_for(std::chrono::microseconds(1'000'000LL * index / s.connect_per_second));
  sw::TcpStream conn;
  try {
    conn = sw::TcpStream::connect("127.0.0.1", s.port, sw::deadline_after(30s));
  } catch (const std::exception& e) {
    count_error(totals, std::string("connect: ") + e.what());
    return;
  }
  ++totals.connected;
  if (++totals.open > totals.peak_open) totals.peak_open = totals.open;
  std::minstd_rand rng(static_cast<unsigned>(index));
  std::uniform_int_distribution<int> gap_ms(500, 1500);
  std::string buffer;
  static constexpr std::string_view request = "GET / HTTP/1.1\r\nHost: c10k\r\n\r\n";
  try {
    // Until every connection is up, hold_until is unset (max): keep going.
    while (sw::Clock::now() < hold_until) {
      conn.write_all(request, sw::deadline_after(30s));
      if (!read_hello(conn, buffer)) {
        count_error(totals, "unexpected response");
        break;
      }
      ++totals.requests;
      sw::sleep_for(std::chrono::milliseconds(gap_ms(rng)));
    }
  } catch (const std::exception& e) {
    count_error(totals, e.what());
  }
  --totals.open;
}

int parse_int(const char* text) { return std::atoi(text); }

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view option = argv[i];
    if (option == "--port") s.port = static_cast<std::uint16_t>(parse_int(argv[i + 1]));
    else if (option == "--connections") s.connections = parse_int(argv[i + 1]);
    else if (option == "--seconds") s.seconds = parse_int(argv[i + 1]);
    else if (option == "--connect-per-second") s.connect_per_second = parse_int(argv[i + 1]);
    else {
      std::fprintf(stderr, "c10k_client: unknown option %s\n", argv[i]);
      return 2;
    }
  }

  Totals totals;
  const auto started = sw::Clock::now();
  sw::Clock::time_point hold_until = sw::Clock::time_point::max();
  double held_seconds = 0;
  sw::run([&] {
    std::vector<sw::Task<void>> tasks;
    tasks.reserve(static_cast<std::size_t>(s.connections));
    for (int i = 0; i < s.connections; ++i) {
      tasks.push_back(sw::spawn([&, i] { hold_connection(i, s, totals, hold_until); }, "c10k connection"));
    }
    // The hold starts once every connection is open (or has failed).
    while (totals.connected + totals.errors < s.connections) sw::sleep_for(100ms);
    const auto hold_start = sw::Clock::now();
    hold_until = hold_start + std::chrono::seconds(s.seconds);
    std::printf("c10k: %d connections open after %.1f s; holding them for %d s\n", totals.open,
                std::chrono::duration<double>(hold_start - started).count(), s.seconds);
    std::fflush(stdout);
    for (auto& t : tasks) t.join();
    held_seconds = std::chrono::duration<double>(sw::Clock::now() - hold_start).count();
  });

  std::printf("c10k: connections=%d peak_open=%d requests=%ld errors=%ld held=%.1fs%s%s\n", s.connections,
              totals.peak_open, totals.requests, totals.errors, held_seconds,
              totals.errors != 0 ? " first_error=" : "", totals.first_error.c_str());
  const bool ok = totals.errors == 0 && totals.peak_open == s.connections && held_seconds >= s.seconds;
  return ok ? 0 : 1;
}
