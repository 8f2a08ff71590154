#include "curl/multi.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "base/coarse_clock.hpp"
#include "core/fiber.hpp"
#include "core/loop.hpp"
#include "curl/client_stats.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"

namespace stallwatch::curl_adapter {
namespace {

// The Multi of the loop running on this thread (the driver holds it).
thread_local Multi* tls_multi = nullptr;

// Socket generations by descriptor number; descriptors beyond the table all
// share generation 0 (their events are never dropped, as without tracking).
constexpr std::size_t tracked_fds = 65536;
std::array<std::atomic<std::uint32_t>, tracked_fds> generations{};

std::uint32_t generation_of(curl_socket_t fd) {
  return fd >= 0 && static_cast<std::size_t>(fd) < tracked_fds
             ? generations[static_cast<std::size_t>(fd)].load(std::memory_order_relaxed)
             : 0;
}

void next_generation(curl_socket_t fd) {
  if (fd >= 0 && static_cast<std::size_t>(fd) < tracked_fds) {
    generations[static_cast<std::size_t>(fd)].fetch_add(1, std::memory_order_relaxed);
  }
}

std::uint64_t tag(curl_socket_t fd) {
  return (std::uint64_t{generation_of(fd)} << 32) | static_cast<std::uint32_t>(fd);
}

// Events for one batch of the driver: enough to keep a busy loop's sockets
// moving; more wait for the next round.
constexpr int events_per_round = 64;

// The driver's work in one round before the loop gets a pass (timers, I/O,
// other fibers). One socket action on a socket that stays readable reads up
// to 100 buffers (1.6 MiB at curl's 16 KiB), some 0.3-0.5 ms over loopback,
// and calls the write callback for each: the round ends between socket
// actions, and the HTTP client's write callback pauses its transfer.
constexpr std::uint64_t round_budget_ns = 2'000'000;

}  // namespace

void init_curl_once() {
  static std::atomic<bool> done{false};
  if (done.load(std::memory_order_acquire)) return;
  in_thread([] {
    static std::once_flag once;
    std::call_once(once, [] {
      const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
      if (rc != CURLE_OK) {
        throw std::runtime_error(std::string("stallwatch: curl_global_init: ") + curl_easy_strerror(rc));
      }
      // Debian's libcurl resolves names on a thread of its own; a build
      // without an asynchronous resolver would call getaddrinfo on the loop.
      const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
      if ((info->features & CURL_VERSION_ASYNCHDNS) == 0) {
        emit::message(emit::process_wide, "curl_sync_resolver",
                      std::string("libcurl ") + info->version +
                          " has no asynchronous resolver: a host name in a curl::perform URL is resolved on the "
                          "loop (blocking it); use addresses, or CURLOPT_RESOLVE with stallwatch::resolve",
                      {{"curl_version", std::string(info->version)}});
      }
    });
  });
  done.store(true, std::memory_order_release);
}

curl_socket_t open_socket(void*, curlsocktype, struct curl_sockaddr* address) noexcept {
  const int fd = ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  next_generation(fd);
  return fd;
}

int close_socket(void*, curl_socket_t fd) noexcept {
  next_generation(fd);
  return ::close(fd);
}

std::shared_ptr<Multi> Multi::for_this_loop(core::Loop& loop) {
  if (tls_multi != nullptr) return tls_multi->shared_from_this();
  init_curl_once();
  if (tls_multi != nullptr) return tls_multi->shared_from_this();  // made while this fiber waited
  auto multi = std::make_shared<Multi>(loop);
  tls_multi = multi.get();
  spawn(
      [multi] {
        // However the driver ends (the loop ends and cancels it, or curl
        // fails), later transfers of this thread get a new Multi.
        struct Unpublish {
          Multi* multi;
          ~Unpublish() {
            if (tls_multi == multi) tls_multi = nullptr;
          }
        } unpublish{multi.get()};
        multi->drive();
      },
      "curl multi");
  return multi;
}

Multi::Multi(core::Loop& loop) : loop_(loop) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "stallwatch: curl: epoll_create1");
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    ::close(epoll_fd_);
    throw std::runtime_error("stallwatch: curl: curl_multi_init failed");
  }
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Multi::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Multi::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  stats_ = &ClientStats::for_loop(loop.record().index);
}

Multi::~Multi() {
  // Closes the cached connections (through close_socket).
  curl_multi_cleanup(multi_);
  forget_fd(epoll_fd_);
  ::close(epoll_fd_);
}

void Multi::add(Transfer& transfer) {
  const CURLMcode rc = curl_multi_add_handle(multi_, transfer.easy);
  if (rc != CURLM_OK) {
    throw std::invalid_argument(std::string("stallwatch: curl::perform: curl_multi_add_handle: ") +
                                curl_multi_strerror(rc));
  }
  transfers_.emplace(transfer.easy, &transfer);
  stats_->set_active(static_cast<std::int64_t>(transfers_.size()));
}

void Multi::abandon(Transfer& transfer) noexcept {
  if (transfers_.erase(transfer.easy) == 0) return;
  forget_paused(transfer.easy);
  // Premature removal: curl closes a connection that is not multiplexed
  // (multi_done), so no half-read response is ever reused.
  curl_multi_remove_handle(multi_, transfer.easy);
  stats_->set_active(static_cast<std::int64_t>(transfers_.size()));
}

void Multi::set_max_host_connections(long n) { curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, n); }

int Multi::on_socket(CURL*, curl_socket_t fd, int what, void* self, void*) noexcept {
  static_cast<Multi*>(self)->watch(fd, what);
  return 0;
}

void Multi::watch(curl_socket_t fd, int what) noexcept {
  if (what == CURL_POLL_REMOVE) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    return;
  }
  epoll_event ev{};
  ev.events = ((what & CURL_POLL_IN) != 0 ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) != 0 ? EPOLLOUT : 0u);
  ev.data.u64 = tag(fd);
  // The epoll set is the truth: a socket closed without CURL_POLL_REMOVE has
  // left it already, so a reused number is added afresh.
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

int Multi::on_timer(CURLM*, long timeout_ms, void* self) noexcept {
  auto* multi = static_cast<Multi*>(self);
  if (timeout_ms < 0) {
    multi->timer_due_ns_ = 0;
    return 0;
  }
  // Only recorded here: the driver calls curl when it is due (never from
  // inside this callback), even for 0 ms.
  multi->timer_due_ns_ = base::monotonic_ns() + static_cast<std::uint64_t>(timeout_ms) * 1'000'000;
  multi->wake_driver();
  return 0;
}

void Multi::wake_driver() noexcept {
  // Not parked: it is ready already, or it is the one calling curl.
  if (driver_ == nullptr || !driver_->parked) return;
  core::Fiber* driver = std::exchange(driver_, nullptr);
  loop_.detach_from_waits(driver);
  loop_.make_ready(driver, core::WakeReason::notified);
}

bool pause_if_round_spent(CURL* easy) noexcept {
  Multi* multi = tls_multi;
  return multi != nullptr && multi->pause_if_round_spent(easy);
}

bool Multi::pause_if_round_spent(CURL* easy) noexcept {
  if (round_started_ns_ == 0 || base::monotonic_ns() - round_started_ns_ < round_budget_ns) return false;
  try {
    paused_.push_back(easy);
  } catch (...) {
    return false;  // no room to remember it: it goes on, unpaused
  }
  return true;
}

void Multi::resume_paused() {
  std::vector<CURL*> paused;
  paused.swap(paused_);
  // curl delivers what the callback refused again, from here; the rest of
  // the transfer follows at its timer (curl expires it at once).
  for (CURL* easy : paused) curl_easy_pause(easy, CURLPAUSE_CONT);
  finish_done_transfers();
}

void Multi::forget_paused(CURL* easy) noexcept { std::erase(paused_, easy); }

void Multi::act(curl_socket_t fd, int events) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, events, &running);
  finish_done_transfers();
}

void Multi::finish_done_transfers() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;  // msg is invalid once the handle is removed
    auto it = transfers_.find(easy);
    forget_paused(easy);
    curl_multi_remove_handle(multi_, easy);
    if (it == transfers_.end()) continue;
    Transfer* transfer = it->second;
    transfers_.erase(it);
    transfer->done = true;
    transfer->result = result;
    if (transfer->waiter != nullptr && transfer->waiter->parked) {
      loop_.detach_from_waits(transfer->waiter);
      loop_.make_ready(transfer->waiter, core::WakeReason::notified);
    }
  }
  stats_->set_active(static_cast<std::int64_t>(transfers_.size()));
}

void Multi::drive() {
  core::Fiber* self = loop_.running();
  std::array<epoll_event, events_per_round> events;
  int next = 0;  // events[next, ready) are left from a round that ran out of time
  int ready = 0;
  while (!self->cancel_requested) {
    round_started_ns_ = base::monotonic_ns();
    bool worked = !paused_.empty();
    resume_paused();
    if (timer_due_ns_ != 0 && timer_due_ns_ <= base::monotonic_ns()) {
      timer_due_ns_ = 0;
      act(CURL_SOCKET_TIMEOUT, 0);
      worked = true;
    }
    if (next == ready) {
      ready = std::max(::epoll_wait(epoll_fd_, events.data(), events_per_round, 0), 0);
      next = 0;
    }
    // Level-triggered: a socket left for the next round, or not acted on,
    // is reported again; a left event for a socket curl closed meanwhile
    // carries its old generation and is dropped.
    while (next < ready && base::monotonic_ns() - round_started_ns_ < round_budget_ns) {
      const epoll_event& event = events[static_cast<std::size_t>(next++)];
      worked = true;
      const auto fd = static_cast<curl_socket_t>(event.data.u64 & 0xffffffffu);
      if (event.data.u64 != tag(fd)) continue;  // an older socket of that number
      const std::uint32_t e = event.events;
      act(fd, ((e & EPOLLIN) != 0 ? CURL_CSELECT_IN : 0) | ((e & EPOLLOUT) != 0 ? CURL_CSELECT_OUT : 0) |
                  ((e & EPOLLERR) != 0 ? CURL_CSELECT_ERR : 0));
    }
    round_started_ns_ = 0;
    if (worked || next < ready) {
      // Sockets may still be ready: look again after the loop has taken a
      // pass (due timers, I/O, the fibers just woken), however long this
      // round was and whether or not another fiber is ready.
      if (self->cancel_requested) break;
      loop_.yield_to_scheduler();
      continue;
    }
    // Nothing ready: park on the epoll set (its descriptor turns readable
    // when any socket in it is ready) until curl's timer is due.
    if (loop_.reactor().consume_or_wait(epoll_fd_, false, &self->io)) continue;
    driver_ = self;
    const core::WakeReason why = loop_.park(timer_due_ns_);
    driver_ = nullptr;
    if (why == core::WakeReason::cancelled) break;
  }
}

}  // namespace stallwatch::curl_adapter
