// stallwatch/net.hpp — TCP listener and stream that park the fiber, never the loop.
//
// Every call here runs on a loop thread, from a fiber. Sockets are
// O_NONBLOCK: a read or write tries the system call first and parks the fiber
// on the loop's reactor only when the kernel says EAGAIN, so a busy
// connection costs no reactor round trip. Name resolution runs on the
// in_thread pool, because getaddrinfo blocks.
//
//   auto listener = stallwatch::TcpListener::bind("127.0.0.1", 8080);
//   for (;;) {
//     stallwatch::TcpStream conn = listener.accept();
//     stallwatch::spawn([c = std::move(conn)]() mutable {
//       char buf[4096];
//       while (std::size_t n = c.read_some(buf, sizeof buf)) c.write_all(buf, n);
//     }, "echo");
//   }
//
// Errors: a deadline throws stallwatch::deadline_exceeded, a cancelled fiber
// stallwatch::cancelled, a failed system call std::system_error carrying its
// errno (ECONNRESET for a peer reset, EPIPE for a write after the peer
// closed), a premature end of stream in read_exact stallwatch::end_of_stream.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

// The peer closed its side before read_exact got all the bytes it asked for.
class STALLWATCH_EXPORT end_of_stream : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An IPv4 or IPv6 address with a port.
struct STALLWATCH_EXPORT SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  // "127.0.0.1:8080" or "[::1]:8080".
  std::string to_string() const;
  std::uint16_t port() const;
};

// Resolves host (a name or a numeric address) and port to addresses, in the
// resolver's order. Numeric hosts are parsed on the loop; names go through
// getaddrinfo on the in_thread pool. Throws std::system_error (category
// "getaddrinfo") naming the host when it cannot be resolved. Loop thread.
STALLWATCH_EXPORT std::vector<SocketAddress> resolve(std::string_view host, std::uint16_t port);

// The bytes of one TcpStream::read_pooled, in a buffer lent by the calling
// loop thread's pool; the buffer goes back to the pool when this is
// destroyed. Empty (size() 0) at end of stream. Move-only; loop thread.
class STALLWATCH_EXPORT PooledRead {
 public:
  // Bytes one read takes at most.
  static constexpr std::size_t capacity = 16384;

  PooledRead() = default;
  PooledRead(PooledRead&& other) noexcept;
  PooledRead& operator=(PooledRead&& other) noexcept;
  PooledRead(const PooledRead&) = delete;
  PooledRead& operator=(const PooledRead&) = delete;
  ~PooledRead();

  const char* data() const { return buffer_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  friend class TcpStream;
  char* buffer_ = nullptr;
  std::size_t size_ = 0;
};

// A connected TCP socket owned by one fiber at a time. Move-only; the
// destructor closes it (telling the reactor first).
class STALLWATCH_EXPORT TcpStream {
 public:
  TcpStream() = default;
  // Takes ownership of a connected socket and makes it O_NONBLOCK.
  explicit TcpStream(int fd);
  TcpStream(TcpStream&& other) noexcept;
  TcpStream& operator=(TcpStream&& other) noexcept;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream();

  // Resolves host and connects to the first address that accepts, within
  // the deadline. Throws deadline_exceeded ("stallwatch: connect to
  // 127.0.0.1:9: deadline exceeded after 500 ms"), or std::system_error with
  // the last address's error (ECONNREFUSED, ...).
  static TcpStream connect(std::string_view host, std::uint16_t port, Deadline deadline = {});
  static TcpStream connect(const SocketAddress& address, Deadline deadline = {});

  // Reads at most size bytes; parks until at least one is available.
  // Returns 0 once the peer has closed its side (half-close included).
  std::size_t read_some(void* buffer, std::size_t size, Deadline deadline = {});
  // Like read_some, but parks holding no buffer: once bytes (or end of
  // stream) are there, reads up to PooledRead::capacity of them into a
  // buffer borrowed from the loop thread's pool. A server that keeps
  // thousands of idle keep-alive connections parked here pays no buffer per
  // connection (a 16 KiB buffer on each fiber's stack costs 16 KiB of
  // memory per connection); drop the PooledRead before the next read.
  //
  //   for (;;) {
  //     const stallwatch::PooledRead bytes = conn.read_pooled();
  //     if (bytes.empty()) break;  // end of stream
  //     parser.feed(bytes.data(), bytes.size());
  //   }
  PooledRead read_pooled(Deadline deadline = {});
  // Reads exactly size bytes or throws end_of_stream.
  void read_exact(void* buffer, std::size_t size, Deadline deadline = {});
  // Writes all of data, parking while the socket buffer is full. Never
  // raises SIGPIPE: a closed peer is std::system_error(EPIPE).
  void write_all(const void* data, std::size_t size, Deadline deadline = {});
  void write_all(std::string_view data, Deadline deadline = {}) { write_all(data.data(), data.size(), deadline); }
  // Half-close: no more writes from this side; reads go on.
  void shutdown_write();
  // Closes now (idempotent).
  void close() noexcept;

  // TCP_NODELAY on or off.
  void set_no_delay(bool on);
  SocketAddress peer_address() const;
  int fd() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }

 private:
  friend class TcpListener;
  int fd_ = -1;
};

struct ListenOptions {
  int backlog = 4096;
  // SO_REUSEPORT: several loops each bind their own listener on one port
  // and the kernel spreads connections between them. With run_loops, each
  // loop binds its own:
  //
  //   stallwatch::run_loops(4, [](std::size_t) {
  //     stallwatch::ListenOptions options;
  //     options.reuse_port = true;
  //     auto listener = stallwatch::TcpListener::bind("0.0.0.0", 8080, options);
  //     serve(listener);  // accept and spawn, as above
  //   });
  bool reuse_port = false;
  // Connections accept() takes per loop iteration (at least 1). Past it,
  // accept parks until the loop's next iteration and then runs before the
  // fibers already ready: a burst of thousands of connections neither holds
  // the loop in one long slice nor waits behind every busy connection.
  int accept_batch = 64;
  // Fiber stacks the loop that binds the listener keeps ready ahead of
  // demand (carved, guard page set, top page in memory), prepared while it
  // has nothing else to do: a burst of that many connections, each served
  // by a new fiber, takes no mmap, mprotect or page fault for its stack.
  // Each costs a page of memory (4 KiB) and two of the process's memory
  // mappings (docs/STACKS.md); stacks beyond it that a burst leaves free are
  // given back when the loop is idle. 0: none. A loop keeps the largest
  // count any of its listeners asked for until it ends.
  int ready_stacks = 1024;
};

// The accept queue of one listening address of this process: connections
// the kernel has completed that accept has not yet taken, and the queue's
// limit (the backlog, capped by net.core.somaxconn). Listeners sharing an
// address (SO_REUSEPORT, one per loop) are summed.
struct ListenQueue {
  std::string address;  // "127.0.0.1:8080"
  std::uint64_t queued = 0;
  std::uint64_t limit = 0;
};

// A listening TCP socket. Move-only.
class STALLWATCH_EXPORT TcpListener {
 public:
  TcpListener() = default;
  TcpListener(TcpListener&& other) noexcept;
  TcpListener& operator=(TcpListener&& other) noexcept;
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  ~TcpListener();

  // Binds host:port (port 0 picks a free one) with SO_REUSEADDR and listens.
  // host must be numeric. Throws std::system_error naming the address.
  static TcpListener bind(std::string_view host, std::uint16_t port, ListenOptions options = {});

  // Parks until a connection arrives; at most options.accept_batch
  // connections are taken per loop iteration (see ListenOptions), and a
  // wake-up for a new connection runs the caller first, ahead of the fibers
  // already ready. When the process is out of
  // descriptors (EMFILE/ENFILE) it backs off with a growing sleep (1 ms up
  // to 1 s), counts it (accept_backoffs_total, and the metric
  // stallwatch_accept_backoffs_total), logs it (once a minute at most) and
  // tries again; it never spins. Connections reset before they are
  // accepted are skipped.
  TcpStream accept(Deadline deadline = {});

  // The bound address (with the real port when bound to port 0).
  SocketAddress local_address() const;
  int fd() const { return fd_; }
  void close() noexcept;

 private:
  explicit TcpListener(int fd, int accept_batch) : fd_(fd), accept_batch_(accept_batch) {}
  int fd_ = -1;
  int accept_batch_ = 64;
  std::uint64_t batch_iteration_ = 0;  // the loop iteration (io_polls) of the current batch
  int batch_accepted_ = 0;
};

// Times accept backed off for lack of descriptors, process-wide. Any thread.
STALLWATCH_EXPORT std::uint64_t accept_backoffs_total() noexcept;

// The accept queues of this process's open TcpListeners, by address, read
// from the kernel now (TCP_INFO). For the metrics stallwatch_listen_queue_*.
// Any thread.
STALLWATCH_EXPORT std::vector<ListenQueue> listen_queues();

}  // namespace v1
}  // namespace stallwatch
