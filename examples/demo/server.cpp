// Connections of one loop: read, parse, answer, keep alive; drain on stop.
#include "server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <string>
#include <system_error>
#include <vector>

#include <stallwatch/errors.hpp>
#include <stallwatch/io.hpp>
#include <stallwatch/loop.hpp>
#include <stallwatch/net.hpp>

#include "endpoints.hpp"
#include "http.hpp"

namespace demo {

namespace {

using stallwatch::Clock;

// One connection as its loop's sweeper and drain see it.
struct Connection {
  int fd = -1;  // -1: the slot is free
  bool idle = true;        // waiting for the first byte of a request
  bool timed_out = false;  // the sweeper shut its read side
  // While waiting for a request's bytes; max() while answering one.
  Clock::time_point read_deadline = Clock::time_point::max();
};

// The connections of one loop in one place (a deque: adding never moves an
// entry), so a sweep walks memory in order instead of chasing pointers.
class ConnectionTable {
 public:
  Connection& add(int fd) {
    Connection* c;
    if (free_.empty()) {
      c = &slots_.emplace_back();
    } else {
      c = free_.back();
      free_.pop_back();
    }
    *c = Connection{};
    c->fd = fd;
    ++live_;
    return *c;
  }
  void remove(Connection& c) {
    c.fd = -1;
    free_.push_back(&c);
    --live_;
  }
  bool empty() const { return live_ == 0; }
  template <class F>
  void for_each(F&& f) {
    for (Connection& c : slots_) {
      if (c.fd >= 0) f(c);
    }
  }

 private:
  std::deque<Connection> slots_;
  std::vector<Connection*> free_;
  std::size_t live_ = 0;
};

struct LoopState {
  ConnectionTable connections;
  bool stopping = false;
};

// The answer to "/" on a kept-alive connection is the same every time:
// format it once per thread.
const std::string& hello_response() {
  static thread_local const std::string response = format_response(200, "hello", true);
  return response;
}

// Runs the request's endpoint; a failure becomes a 500.
Response respond(const Request& request) {
  try {
    return run_endpoint(route_for(request.method, request.url));
  } catch (const stallwatch::cancelled&) {
    throw;  // the drain gave up on this request: no answer
  } catch (const std::exception& e) {
    return {500, std::string("error: ") + e.what() + "\n"};
  }
}

// Decided after the endpoint ran: a drain that began meanwhile closes.
void append_response(const Response& response, bool keep_alive, std::string& out) {
  if (keep_alive && response.status == 200 && response.body == "hello") {
    out += hello_response();
  } else {
    out += format_response(response.status, response.body, keep_alive);
  }
}

void serve_connection(stallwatch::TcpStream stream, LoopState& loop, const ServerConfig& config) {
  Connection& self = loop.connections.add(stream.fd());
  struct Unregister {
    LoopState& loop;
    Connection& self;
    ~Unregister() { loop.connections.remove(self); }
  } unregister{loop, self};

  RequestParser parser;
  std::string out;
  self.read_deadline = Clock::now() + config.header_timeout;
  for (;;) {
    self.idle = !parser.in_progress();
    // Parked here, the connection holds no read buffer (one on this stack
    // cost 16 KiB per idle keep-alive connection); the bytes come in one
    // lent by the loop's pool, given back at the end of this iteration.
    const stallwatch::PooledRead bytes = stream.read_pooled();
    const char* const buffer = bytes.data();
    const std::size_t n = bytes.size();
    if (n == 0) {
      // The peer closed, a drain or the sweeper shut our read side. Timed
      // out mid-request: say so first; idle: just close.
      if (self.timed_out && parser.in_progress()) stream.write_all(format_response(408, "request timeout\n", false));
      return;
    }
    self.idle = false;

    std::size_t pos = 0;
    while (pos < n) {
      const RequestParser::Result result = parser.feed(buffer + pos, n - pos);
      pos += result.consumed;
      if (result.status == RequestParser::Status::error) {
        out += format_response(parser.error_status(), std::string(reason_phrase(parser.error_status())) + "\n", false);
        stream.write_all(out);
        return;
      }
      if (result.status == RequestParser::Status::need_more) break;
      self.read_deadline = Clock::time_point::max();  // a slow endpoint is not a slow client
      const Response response = respond(parser.request());
      const bool keep_alive = parser.request().keep_alive && !loop.stopping;
      append_response(response, keep_alive, out);
      if (!keep_alive) {
        stream.write_all(out);
        stream.shutdown_write();
        return;
      }
      parser.next();
      self.read_deadline = Clock::now() + config.header_timeout;
    }
    if (!out.empty()) {
      stream.write_all(out);
      out.clear();
    }
  }
}

// How often the sweeper looks: a client is closed at most this long after
// its header timeout.
std::chrono::milliseconds sweep_interval(std::chrono::milliseconds header_timeout) {
  return std::clamp(header_timeout / 10, std::chrono::milliseconds(1), std::chrono::milliseconds(500));
}

// Header timeouts for all connections of the loop, one sweep per interval.
// A deadline per read puts every request through the loop's timer heap twice
// (armed, then removed on wake-up), each a walk over cache-cold fibers: 7% of
// the loop's time at 10,000 keep-alive connections. Shutting the read side
// wakes the parked read with end of stream.
void sweep_timeouts(LoopState& loop, const ServerConfig& config) {
  const std::chrono::milliseconds interval = sweep_interval(config.header_timeout);
  for (;;) {
    stallwatch::sleep_for(interval);
    const Clock::time_point now = Clock::now();
    loop.connections.for_each([now](Connection& c) {
      if (c.read_deadline <= now && !c.timed_out) {
        c.timed_out = true;
        ::shutdown(c.fd, SHUT_RD);
      }
    });
  }
}

// Accepts until cancelled. An unexpected accept error is logged and retried
// after a pause rather than silently ending the service. accept() itself
// takes a burst a bounded batch per loop iteration (ListenOptions::accept_batch).
void accept_connections(stallwatch::TcpListener& listener, LoopState& loop, const ServerConfig& config) {
  for (;;) {
    stallwatch::TcpStream stream;
    try {
      stream = listener.accept();
    } catch (const std::system_error& e) {
      std::fprintf(stderr, "stallwatch-demo: %s; retrying in 100 ms\n", e.what());
      stallwatch::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    stallwatch::spawn(
        [stream = std::move(stream), &loop, &config]() mutable {
          try {
            serve_connection(std::move(stream), loop, config);
          } catch (const std::system_error&) {
            // reset or broken pipe: the client is gone, nothing to answer
          } catch (const stallwatch::cancelled&) {
            // the drain timed out while this request was still running
          }
        },
        "http connection");
  }
}

// Stops the drain: idle connections are parked in a read; shutting down
// their read side wakes that read with end of stream.
void close_idle(LoopState& loop) {
  loop.connections.for_each([](Connection& c) {
    if (c.idle) ::shutdown(c.fd, SHUT_RD);
  });
}

}  // namespace

void serve(const ServerConfig& config, int stop_fd, const std::function<void()>& on_listening) {
  stallwatch::ListenOptions options;
  options.reuse_port = true;
  stallwatch::TcpListener listener = stallwatch::TcpListener::bind("127.0.0.1", config.port, options);
  on_listening();

  LoopState loop;
  auto acceptor = stallwatch::spawn([&] { accept_connections(listener, loop, config); }, "http acceptor");
  auto sweeper = stallwatch::spawn([&] { sweep_timeouts(loop, config); }, "http header timeouts");
  stallwatch::wait_readable(stop_fd);

  loop.stopping = true;
  acceptor.cancel();
  try {
    acceptor.join();
  } catch (const stallwatch::cancelled&) {
  }
  listener.close();

  const auto give_up = Clock::now() + config.drain_timeout;
  while (!loop.connections.empty() && Clock::now() < give_up) {
    close_idle(loop);
    stallwatch::sleep_for(std::chrono::milliseconds(10));
  }
  sweeper.cancel();
  try {
    sweeper.join();
  } catch (const stallwatch::cancelled&) {
  }
  // Whatever is still busy is cancelled when this main fiber returns.
}

}  // namespace demo
