// TCP on the loop: non-blocking sockets that try the system call first and
// park on the reactor only on EAGAIN, or without trying when the reactor
// knows the receive queue is empty.
#include "stallwatch/net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "base/system_error.hpp"
#include "core/loop.hpp"
#include "core/parking.hpp"
#include "emit/emitter.hpp"
#include "io/wait.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"

namespace stallwatch {
inline namespace v1 {

namespace {

std::atomic<std::uint64_t> accept_backoffs{0};
std::atomic<std::int64_t> accept_backoff_logged_ns{0};  // steady clock, 0: never

// Says once a minute at most that accept is out of descriptors, so a
// listener that stops taking connections is visible in the log.
void log_accept_backoff(int err) {
  constexpr std::int64_t interval_ns = 60'000'000'000;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch()).count();
  std::int64_t last = accept_backoff_logged_ns.load(std::memory_order_relaxed);
  if (last != 0 && now - last < interval_ns) return;
  if (!accept_backoff_logged_ns.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  const std::uint64_t backoffs = accept_backoffs.load(std::memory_order_relaxed);
  const core::Loop* loop = core::Loop::current();
  emit::message(loop != nullptr ? loop->record().index : emit::process_wide, "accept_backoff",
                std::string("accept: ") + std::strerror(err) +
                    "; connections wait in the listen queue while accept backs off (up to 1 s), " +
                    std::to_string(backoffs) +
                    " back-offs so far (stallwatch_accept_backoffs_total); raise `ulimit -n` or close idle "
                    "connections",
                {{"error", std::string(std::strerror(err))}, {"backoffs", static_cast<std::int64_t>(backoffs)}});
}

// The open listeners' descriptors, for listen_queues() (a scrape thread).
// A listener leaves it before its descriptor is closed.
struct ListenerRegistry {
  std::mutex mutex;
  std::vector<int> fds;
};

ListenerRegistry& listener_registry() {
  static auto* registry = new ListenerRegistry;  // never destroyed: a scrape may run during exit
  return *registry;
}

void register_listener(int fd) {
  ListenerRegistry& registry = listener_registry();
  std::lock_guard lock(registry.mutex);
  registry.fds.push_back(fd);
}

void unregister_listener(int fd) noexcept {
  ListenerRegistry& registry = listener_registry();
  std::lock_guard lock(registry.mutex);
  std::erase(registry.fds, fd);
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) base::throw_errno(errno, "fcntl(O_NONBLOCK)");
}

reactor::Reactor* reactor_of_this_thread() noexcept {
  core::Loop* loop = core::Loop::current();
  return loop != nullptr ? &loop->reactor() : nullptr;
}

void close_fd(int fd) noexcept {
  if (fd < 0) return;
  forget_fd(fd);
  ::close(fd);
}

// Parses a numeric IPv4 or IPv6 host without touching the resolver.
bool parse_numeric(std::string_view host, std::uint16_t port, SocketAddress& out) {
  std::string h(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    return true;
  }
  out = SocketAddress{};
  return false;
}

class GaiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

const std::error_category& gai_category() {
  static const GaiCategory category;
  return category;
}

// Blocking: runs on the in_thread pool.
std::vector<SocketAddress> getaddrinfo_blocking(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    throw std::system_error(rc, gai_category(), "stallwatch: resolve '" + host + "'");
  }
  std::vector<SocketAddress> out;
  for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
    SocketAddress address;
    std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
    address.length = a->ai_addrlen;
    out.push_back(address);
  }
  ::freeaddrinfo(list);
  return out;
}

}  // namespace

std::string SocketAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&storage);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (storage.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "(unspecified)";
}

std::uint16_t SocketAddress::port() const {
  if (storage.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (storage.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::vector<SocketAddress> resolve(std::string_view host, std::uint16_t port) {
  core::Loop::require("resolve");
  SocketAddress numeric;
  if (parse_numeric(host, port, numeric)) return {numeric};
  return in_thread(getaddrinfo_blocking, std::string(host), port);
}

// ---- TcpStream ----

TcpStream::TcpStream(int fd) : fd_(fd) {
  if (fd_ < 0) return;
  try {
    set_nonblocking(fd_);
  } catch (...) {
    ::close(fd_);  // we own it from here on, even when construction fails
    throw;
  }
}

TcpStream::TcpStream(TcpStream&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

TcpStream& TcpStream::operator=(TcpStream&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

TcpStream::~TcpStream() { close(); }

void TcpStream::close() noexcept { close_fd(std::exchange(fd_, -1)); }

TcpStream TcpStream::connect(const SocketAddress& address, Deadline deadline) {
  core::Loop::require("connect");
  const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) base::throw_errno(errno, "socket");
  TcpStream stream;
  stream.fd_ = fd;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) == 0) return stream;
  if (errno != EINPROGRESS) base::throw_errno(errno, "connect " + address.to_string());
  core::as_operation([&] { return "connect to " + address.to_string(); }, deadline,
                     [&] { io::wait_for(fd, true, deadline, "connect"); });
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err != 0) base::throw_errno(err, "connect " + address.to_string());
  return stream;
}

TcpStream TcpStream::connect(std::string_view host, std::uint16_t port, Deadline deadline) {
  core::Loop::require("connect");
  const std::vector<SocketAddress> addresses = resolve(host, port);
  std::exception_ptr last;
  for (const SocketAddress& address : addresses) {
    try {
      return connect(address, deadline);
    } catch (const std::system_error&) {
      last = std::current_exception();
    }
  }
  if (last) std::rethrow_exception(last);
  throw std::system_error(EADDRNOTAVAIL, std::generic_category(),
                          "stallwatch: connect: no address for '" + std::string(host) + "'");
}

namespace {

// read_some's work; its waits' errors name `what`, the call the user made.
std::size_t read_some_of(int fd, void* buffer, std::size_t size, Deadline deadline, const char* what) {
  if (fd < 0) base::throw_errno(EBADF, "read on a closed stream");
  reactor::Reactor* reactor = reactor_of_this_thread();
  // The last read emptied the queue and no byte came since: a recv now
  // would only return EAGAIN (on a keep-alive connection, one per request).
  if (reactor != nullptr && reactor->read_drained(fd)) io::wait_for(fd, false, deadline, what);
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, size, 0);
    if (n >= 0) {
      // Short of the buffer: the queue is empty now (0 is end of stream).
      if (n > 0 && static_cast<std::size_t>(n) < size && reactor != nullptr) reactor->note_read_drained(fd);
      return static_cast<std::size_t>(n);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) base::throw_errno(errno, "read");
    if (reactor != nullptr) reactor->note_read_drained(fd);
    io::wait_for(fd, false, deadline, what);
  }
}

// Read buffers lent to PooledRead, per thread (a loop's fibers share its
// thread's pool). Up to max_free_buffers are kept for reuse, the most recently
// returned first (still in cache); more are freed.
class ReadBufferPool {
 public:
  ReadBufferPool() { free_.reserve(max_free_buffers); }
  ~ReadBufferPool() {
    for (char* buffer : free_) delete[] buffer;
  }
  char* take() {
    if (free_.empty()) return new char[PooledRead::capacity];
    char* buffer = free_.back();
    free_.pop_back();
    return buffer;
  }
  void give_back(char* buffer) noexcept {
    if (free_.size() < max_free_buffers) {
      free_.push_back(buffer);  // capacity reserved: no allocation
    } else {
      delete[] buffer;
    }
  }

 private:
  static constexpr std::size_t max_free_buffers = 64;
  std::vector<char*> free_;
};

ReadBufferPool& read_buffer_pool() {
  static thread_local ReadBufferPool pool;
  return pool;
}

}  // namespace

PooledRead::PooledRead(PooledRead&& other) noexcept
    : buffer_(std::exchange(other.buffer_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PooledRead& PooledRead::operator=(PooledRead&& other) noexcept {
  if (this != &other) {
    if (buffer_ != nullptr) read_buffer_pool().give_back(buffer_);
    buffer_ = std::exchange(other.buffer_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

PooledRead::~PooledRead() {
  if (buffer_ != nullptr) read_buffer_pool().give_back(buffer_);
}

// read_some_of with the buffer borrowed only once a read is expected to find
// bytes, and given back before any wait.
PooledRead TcpStream::read_pooled(Deadline deadline) {
  if (fd_ < 0) base::throw_errno(EBADF, "read on a closed stream");
  reactor::Reactor* reactor = reactor_of_this_thread();
  if (reactor != nullptr && reactor->read_drained(fd_)) io::wait_for(fd_, false, deadline, "read_pooled");
  for (;;) {
    PooledRead got;
    got.buffer_ = read_buffer_pool().take();
    const ssize_t n = ::recv(fd_, got.buffer_, PooledRead::capacity, 0);
    if (n >= 0) {
      if (n > 0 && static_cast<std::size_t>(n) < PooledRead::capacity && reactor != nullptr) {
        reactor->note_read_drained(fd_);
      }
      got.size_ = static_cast<std::size_t>(n);
      return got;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) base::throw_errno(errno, "read");
    if (reactor != nullptr) reactor->note_read_drained(fd_);
    got = PooledRead{};  // nothing held while parked
    io::wait_for(fd_, false, deadline, "read_pooled");
  }
}

std::size_t TcpStream::read_some(void* buffer, std::size_t size, Deadline deadline) {
  return read_some_of(fd_, buffer, size, deadline, "read_some");
}

void TcpStream::read_exact(void* buffer, std::size_t size, Deadline deadline) {
  auto* p = static_cast<char*>(buffer);
  std::size_t got = 0;
  while (got < size) {
    const std::size_t n = read_some_of(fd_, p + got, size - got, deadline, "read_exact");
    if (n == 0) {
      throw end_of_stream("stallwatch: read_exact: peer closed after " + std::to_string(got) + " of " +
                          std::to_string(size) + " bytes");
    }
    got += n;
  }
}

void TcpStream::write_all(const void* data, std::size_t size, Deadline deadline) {
  if (fd_ < 0) base::throw_errno(EBADF, "write on a closed stream");
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd_, p, size, MSG_NOSIGNAL);
    if (n >= 0) {
      p += n;
      size -= static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) base::throw_errno(errno, "write");
    io::wait_for(fd_, true, deadline, "write_all");
  }
}

void TcpStream::shutdown_write() {
  if (fd_ >= 0 && ::shutdown(fd_, SHUT_WR) < 0 && errno != ENOTCONN) base::throw_errno(errno, "shutdown");
}

void TcpStream::set_no_delay(bool on) {
  const int value = on ? 1 : 0;
  if (::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &value, sizeof value) < 0) base::throw_errno(errno, "TCP_NODELAY");
}

SocketAddress TcpStream::peer_address() const {
  SocketAddress address;
  address.length = sizeof address.storage;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&address.storage), &address.length) < 0) {
    base::throw_errno(errno, "getpeername");
  }
  return address;
}

// ---- TcpListener ----

TcpListener::TcpListener(TcpListener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      accept_batch_(other.accept_batch_),
      batch_iteration_(other.batch_iteration_),
      batch_accepted_(other.batch_accepted_) {}

TcpListener& TcpListener::operator=(TcpListener&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    accept_batch_ = other.accept_batch_;
    batch_iteration_ = other.batch_iteration_;
    batch_accepted_ = other.batch_accepted_;
  }
  return *this;
}

TcpListener::~TcpListener() { close(); }

void TcpListener::close() noexcept {
  if (fd_ < 0) return;
  unregister_listener(fd_);
  close_fd(std::exchange(fd_, -1));
}

TcpListener TcpListener::bind(std::string_view host, std::uint16_t port, ListenOptions options) {
  SocketAddress address;
  if (!parse_numeric(host, port, address)) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "stallwatch: listen: '" + std::string(host) + "' is not a numeric address");
  }
  if (options.accept_batch < 1) {
    throw std::invalid_argument("stallwatch: listen: accept_batch " + std::to_string(options.accept_batch) +
                                ": expected at least 1");
  }
  if (options.ready_stacks < 0) {
    throw std::invalid_argument("stallwatch: listen: ready_stacks " + std::to_string(options.ready_stacks) +
                                ": expected 0 or more");
  }
  const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) base::throw_errno(errno, "socket");
  TcpListener listener(fd, options.accept_batch);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    base::throw_errno(errno, "SO_REUSEPORT");
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) < 0) {
    base::throw_errno(errno, "bind " + address.to_string());
  }
  if (::listen(fd, options.backlog) < 0) base::throw_errno(errno, "listen " + address.to_string());
  if (core::Loop* loop = core::Loop::current()) loop->keep_stacks_ready(static_cast<std::size_t>(options.ready_stacks));
  register_listener(fd);
  return listener;
}

// Two rules keep a burst of connections moving (docs/BENCHMARKS.md, "C10K
// all at once"): at most accept_batch_ per loop iteration, then a round of
// other work (core::Loop::park_one_round), so accepting never crowds out
// serving; and the accepting fiber runs first when its turn comes
// (core::FirstInLine), so it never waits behind every ready connection: one
// turn per pass over the ready queue took 32 connections per 0.3 s at 8,000
// busy connections, while the rest of the burst sat in the kernel's queue.
TcpStream TcpListener::accept(Deadline deadline) {
  if (fd_ < 0) base::throw_errno(EBADF, "accept on a closed listener");
  core::Loop* loop = core::Loop::current();
  std::optional<core::FirstInLine> first;
  if (loop != nullptr) {
    first.emplace(loop->running());
    if (loop->io_polls() != batch_iteration_) {
      batch_iteration_ = loop->io_polls();
      batch_accepted_ = 0;
    }
    if (batch_accepted_ >= accept_batch_) {
      loop->park_one_round("TcpListener::accept");
      batch_iteration_ = loop->io_polls();
      batch_accepted_ = 0;
    }
  }
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ++batch_accepted_;
      TcpStream stream;  // accept4 already made it non-blocking
      stream.fd_ = fd;
      return stream;
    }
    switch (errno) {
      case EAGAIN:  // == EWOULDBLOCK on Linux
        wait_readable(fd_, deadline);
        break;
      case EINTR:
      case ECONNABORTED:  // reset while queued: take the next one
      case EPROTO:
        break;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        // Out of descriptors: the pending connection stays queued and the
        // listener stays readable, so waiting on it would spin. Sleep.
        accept_backoffs.fetch_add(1, std::memory_order_relaxed);
        log_accept_backoff(errno);
        if (deadline.is_set() && Clock::now() + backoff > deadline.at) {
          throw deadline_exceeded("stallwatch: TcpListener::accept: deadline exceeded");
        }
        sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        break;
      default:
        base::throw_errno(errno, "accept");
    }
  }
}

SocketAddress TcpListener::local_address() const {
  SocketAddress address;
  address.length = sizeof address.storage;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&address.storage), &address.length) < 0) {
    base::throw_errno(errno, "getsockname");
  }
  return address;
}

std::uint64_t accept_backoffs_total() noexcept { return accept_backoffs.load(std::memory_order_relaxed); }

std::vector<ListenQueue> listen_queues() {
  std::map<std::string, ListenQueue> by_address;
  ListenerRegistry& registry = listener_registry();
  std::lock_guard lock(registry.mutex);
  for (const int fd : registry.fds) {
    SocketAddress address;
    address.length = sizeof address.storage;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address.storage), &address.length) < 0) continue;
    // On a listening socket the kernel reports the accept queue in TCP_INFO:
    // tcpi_unacked is its length, tcpi_sacked its limit.
    tcp_info info{};
    socklen_t length = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0) continue;
    const std::string name = address.to_string();
    ListenQueue& queue = by_address[name];
    queue.address = name;
    queue.queued += info.tcpi_unacked;
    queue.limit += info.tcpi_sacked;
  }
  std::vector<ListenQueue> out;
  out.reserve(by_address.size());
  for (auto& [name, queue] : by_address) out.push_back(std::move(queue));
  return out;
}

}  // namespace v1
}  // namespace stallwatch
