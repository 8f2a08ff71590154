// A Boost.Asio program that knows nothing of stallwatch: a timer ticks every
// 20 ms on one io_context. With the argument `busy`, one tick's handler
// computes for 300 ms, which holds the loop; stallwatch-watch reports it
// on-cpu, naming compute_for() below.
//
//   stallwatch-watch -- stallwatch-watch-asio busy
#include <utility>  // Debian's Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>

namespace {

// Spins for `ms` milliseconds: the handler's own work.
[[gnu::noinline]] unsigned long compute_for(int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  volatile unsigned long x = 1;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 1000; ++i) x = x * 6364136223846793005ul + 1442695040888963407ul;
  }
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  const bool busy = argc > 1 && std::strcmp(argv[1], "busy") == 0;
  boost::asio::io_context io;
  boost::asio::steady_timer timer(io);
  int ticks = 0;
  std::function<void(const boost::system::error_code&)> tick = [&](const boost::system::error_code&) {
    ++ticks;
    if (busy && ticks == 3) compute_for(300);
    if (ticks < 10) {
      timer.expires_after(std::chrono::milliseconds(20));
      timer.async_wait(tick);
    }
  };
  timer.expires_after(std::chrono::milliseconds(20));
  timer.async_wait(tick);
  io.run();
  std::printf("%d ticks\n", ticks);
  return 0;
}
