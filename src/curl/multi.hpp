// One loop's curl multi handle and the fiber that drives it (curl's
// ephiperfifo pattern on stallwatch's loop).
//
// libcurl's socket interface asks to watch sockets (socket callback) and to
// be called back after a time (timer callback). Sockets go into an epoll set
// of the multi's own, level-triggered as curl expects; that set's descriptor
// is one more descriptor of the loop's reactor. The driver fiber parks on it,
// with curl's timer as its deadline, and calls curl_multi_socket_action for
// every ready socket and expired timer. Callbacks only record what curl
// asked for: no curl call is made from inside one (Debian 12's 7.88 answers
// CURLM_RECURSIVE_API_CALL to that).
//
// Sockets are tracked by generation: the open and close socket callbacks bump
// an fd's generation, each epoll entry carries the generation it was added
// with, and an event for an older one is dropped, so a descriptor number curl
// closed (with or without CURL_POLL_REMOVE first) and reused is never taken
// for the old socket.
//
// Loop thread only. A Multi lives while its loop's driver or any transfer
// holds it: the driver lets go when the loop ends (cancel), the transfers as
// they finish; the last one cleans the multi handle up.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

namespace stallwatch::core {
class Loop;
struct Fiber;
}  // namespace stallwatch::core

namespace stallwatch::curl_adapter {

class ClientStats;

// A transfer in progress: its easy handle and the fiber parked on it.
struct Transfer {
  CURL* easy = nullptr;
  core::Fiber* waiter = nullptr;
  bool done = false;
  CURLcode result = CURLE_OK;
};

class Multi : public std::enable_shared_from_this<Multi> {
 public:
  // This loop's Multi, made (and its driver started) on first use.
  static std::shared_ptr<Multi> for_this_loop(core::Loop& loop);

  explicit Multi(core::Loop& loop);
  ~Multi();
  Multi(const Multi&) = delete;
  Multi& operator=(const Multi&) = delete;

  // Adds the transfer's handle; its waiter is woken when it is done. Throws
  // std::invalid_argument when curl refuses the handle.
  void add(Transfer& transfer);
  // Removes a transfer that ended early (deadline, cancel): curl closes its
  // connection unless it is multiplexed (then only the stream ends).
  void abandon(Transfer& transfer) noexcept;

  void set_max_host_connections(long n);
  ClientStats& stats() noexcept { return *stats_; }

  // See curl_adapter::pause_if_round_spent.
  bool pause_if_round_spent(CURL* easy) noexcept;

 private:
  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* self, void* socketp) noexcept;
  static int on_timer(CURLM* multi, long timeout_ms, void* self) noexcept;

  void drive();
  void resume_paused();
  void forget_paused(CURL* easy) noexcept;
  void act(curl_socket_t fd, int events);
  void finish_done_transfers();
  void wake_driver() noexcept;
  void watch(curl_socket_t fd, int what) noexcept;

  core::Loop& loop_;
  CURLM* multi_ = nullptr;
  int epoll_fd_ = -1;
  ClientStats* stats_ = nullptr;
  std::uint64_t timer_due_ns_ = 0;  // 0: no timer
  std::uint64_t round_started_ns_ = 0;  // 0: the driver is between rounds
  std::vector<CURL*> paused_;  // by pause_if_round_spent, resumed next round
  core::Fiber* driver_ = nullptr;   // set while the driver is parked
  std::unordered_map<CURL*, Transfer*> transfers_;
};

// For a write callback (CURLOPT_WRITEFUNCTION) of a transfer on this
// thread's Multi: true once the driver's round has run past its budget.
// The callback must then return CURL_WRITEFUNC_PAUSE, taking nothing of the
// data (curl keeps it and hands it over again); the transfer is resumed at
// the driver's next round, after the loop has taken a pass. So a transfer
// whose socket never runs dry holds the loop for one round, however slow the
// callback is per byte. Loop thread, inside curl.
bool pause_if_round_spent(CURL* easy) noexcept;

// curl_global_init, once per process, on the offload pool: it reads
// OpenSSL's configuration file. Before the first multi or easy handle a loop
// makes (curl_easy_init would run it on the loop otherwise). Loop thread.
void init_curl_once();

// The socket callbacks perform() installs on every easy handle: a socket
// curl opens or closes gets a new generation. Any thread.
curl_socket_t open_socket(void* clientp, curlsocktype purpose, struct curl_sockaddr* address) noexcept;
int close_socket(void* clientp, curl_socket_t fd) noexcept;

}  // namespace stallwatch::curl_adapter
