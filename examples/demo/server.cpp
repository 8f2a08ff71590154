// Connections of one loop: read, parse, answer, keep alive; drain on stop.
#include "server.hpp"

#include <sys/socket.h>

#include <cstdio>
#include <string>
#include <system_error>
#include <unordered_set>

#include <stallwatch/errors.hpp>
#include <stallwatch/io.hpp>
#include <stallwatch/loop.hpp>
#include <stallwatch/net.hpp>

#include "endpoints.hpp"
#include "http.hpp"

namespace demo {

namespace {

using stallwatch::Clock;

struct Connection {
  int fd = -1;
  bool idle = true;  // waiting for the first byte of a request
};

struct LoopState {
  std::unordered_set<Connection*> connections;
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
  Connection self{stream.fd(), true};
  loop.connections.insert(&self);
  struct Unregister {
    LoopState& loop;
    Connection* self;
    ~Unregister() { loop.connections.erase(self); }
  } unregister{loop, &self};

  RequestParser parser;
  std::string out;
  char buffer[16384];
  stallwatch::Deadline deadline = stallwatch::deadline_after(config.header_timeout);
  for (;;) {
    self.idle = !parser.in_progress();
    std::size_t n = 0;
    try {
      n = stream.read_some(buffer, sizeof buffer, deadline);
    } catch (const stallwatch::deadline_exceeded&) {
      // Idle past the timeout: just close. Slow mid-request: say so first.
      if (parser.in_progress()) stream.write_all(format_response(408, "request timeout\n", false));
      return;
    }
    if (n == 0) return;  // the peer closed (or a drain shut our read side)
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
      const Response response = respond(parser.request());
      const bool keep_alive = parser.request().keep_alive && !loop.stopping;
      append_response(response, keep_alive, out);
      if (!keep_alive) {
        stream.write_all(out);
        stream.shutdown_write();
        return;
      }
      parser.next();
      deadline = stallwatch::deadline_after(config.header_timeout);
    }
    if (!out.empty()) {
      stream.write_all(out);
      out.clear();
    }
  }
}

// Accepts until cancelled. An unexpected accept error is logged and retried
// after a pause rather than silently ending the service. accept() returns
// at once while connections are queued, so a burst of thousands would be
// one long slice: yield every few, and the new connections get served
// meanwhile.
void accept_connections(stallwatch::TcpListener& listener, LoopState& loop, const ServerConfig& config) {
  constexpr int accepts_per_slice = 32;
  for (int accepted = 0;; ++accepted) {
    if (accepted % accepts_per_slice == accepts_per_slice - 1) stallwatch::yield();
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
  for (Connection* c : loop.connections) {
    if (c->idle) ::shutdown(c->fd, SHUT_RD);
  }
}

}  // namespace

void serve(const ServerConfig& config, int stop_fd, const std::function<void()>& on_listening) {
  stallwatch::ListenOptions options;
  options.reuse_port = true;
  stallwatch::TcpListener listener = stallwatch::TcpListener::bind("127.0.0.1", config.port, options);
  on_listening();

  LoopState loop;
  auto acceptor = stallwatch::spawn([&] { accept_connections(listener, loop, config); }, "http acceptor");
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
  // Whatever is still busy is cancelled when this main fiber returns.
}

}  // namespace demo
