// One loop's share of the demo service: its own SO_REUSEPORT listener, an
// acceptor fiber, and one fiber per connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace demo {

struct ServerConfig {
  std::uint16_t port = 8080;
  std::chrono::milliseconds header_timeout{10'000};  // idle or slow clients are closed after it
  std::chrono::milliseconds drain_timeout{10'000};   // how long a stop waits for busy connections
};

// Serves on 127.0.0.1:port until stop_fd becomes readable, then stops
// accepting, closes idle connections, lets busy ones finish their request,
// and returns. Calls on_listening once the listener is bound. Runs as the
// main fiber of a loop.
void serve(const ServerConfig& config, int stop_fd, const std::function<void()>& on_listening);

}  // namespace demo
