// Blocking code from libraries nobody here wrote, run on a loop fiber: one
// scenario per library or standard wait, each making its blocking call on
// the line marked `// LINE:<scenario>`. tests/real_waits_test.py runs it with
// libstallwatch-probes preloaded and reads stderr:
//
//   real_waits <scenario> short   the call waits about 5 ms (far below the
//                                 threshold): in strict mode it must end the
//                                 process (70), its report's culprit the marked line
//   real_waits <scenario> long    the call waits about 300 ms: the watchdog
//                                 must report the stall, culprit the marked line
//
// Scenarios: curl (libcurl easy against a slow server on 127.0.0.1, run here on
// a plain thread, serving one request and stopping by itself), sqlite (a
// database another connection holds locked, with a busy timeout), ifstream
// (a FIFO whose writer comes late), future, condition_variable,
// shared_mutex, lock_guard (a contended std::mutex), popen, system, join.
// Exit status 0 when the scenario ran, 2 on a setup error.
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "stallwatch/loop.hpp"

namespace {

using namespace std::chrono_literals;

std::chrono::milliseconds wait_time = 5ms;  // "short"; 300 ms for "long"

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("real_waits: ") + what + ": " + std::strerror(errno));
}

// The other side of each wait, on a plain thread (never flagged): it makes
// the loop fiber wait about wait_time, then lets it go.
class Helper {
 public:
  template <class F>
  explicit Helper(F body) : thread_(std::move(body)) {}
  ~Helper() {
    if (thread_.joinable()) thread_.join();
  }
  std::thread& thread() { return thread_; }

 private:
  std::thread thread_;
};

// ---- libcurl against a slow server ----

// Accepts one connection on 127.0.0.1, reads the request, answers after
// wait_time and closes; gives up by itself after 10 s without a client.
class SlowServer {
 public:
  SlowServer() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    check(listener_ >= 0, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    check(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "bind");
    check(listen(listener_, 1) == 0, "listen");
    check(getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve_one(); });
  }
  ~SlowServer() {
    thread_.join();
    close(listener_);
  }
  int port() const { return port_; }

 private:
  void serve_one() {
    pollfd pfd{listener_, POLLIN, 0};
    if (poll(&pfd, 1, 10'000) != 1) return;
    const int client = accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    char buf[4096];
    std::string request;
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = read(client, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    std::this_thread::sleep_for(wait_time);
    const std::string_view reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    [[maybe_unused]] const ssize_t sent = write(client, reply.data(), reply.size());
    close(client);
  }

  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
};

std::size_t collect_body(char* data, std::size_t size, std::size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

// Set up before the loop: curl_global_init reads OpenSSL's configuration
// file, which is not the call under test.
CURL* prepared_curl;

void with_curl() {
  SlowServer server;
  std::string body;
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/slow";
  curl_easy_setopt(prepared_curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(prepared_curl, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(prepared_curl, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(prepared_curl);  // LINE:curl
  check(rc == CURLE_OK && body == "ok", "curl_easy_perform");
}

// ---- SQLite: a write waits for another connection's lock ----

std::string database_path() { return "/tmp/real_waits." + std::to_string(getpid()) + ".db"; }
sqlite3* loop_db;    // opened before the loop
sqlite3* other_db;   // holds the write lock from a plain thread

void with_sqlite() {
  std::atomic<bool> locked{false};
  Helper holder([&] {
    check(sqlite3_exec(other_db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK, "BEGIN IMMEDIATE");
    locked = true;
    std::this_thread::sleep_for(wait_time);
    check(sqlite3_exec(other_db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK, "COMMIT");
  });
  while (!locked) std::this_thread::yield();
  const int rc = sqlite3_exec(loop_db, "INSERT INTO t VALUES (1)", nullptr, nullptr, nullptr);  // LINE:sqlite
  check(rc == SQLITE_OK, "INSERT");
}

// ---- std::ifstream on a FIFO whose writer opens it late ----

void with_ifstream() {
  const std::string path = "/tmp/real_waits." + std::to_string(getpid()) + ".fifo";
  unlink(path.c_str());
  check(mkfifo(path.c_str(), 0600) == 0, "mkfifo");
  Helper writer([&] {
    std::this_thread::sleep_for(wait_time);
    std::ofstream out(path);
    out << "line\n";
  });
  std::ifstream in(path);  // LINE:ifstream
  std::string line;
  std::getline(in, line);
  unlink(path.c_str());
  check(line == "line", "getline");
}

// ---- the standard library's own waits ----

void with_future() {
  std::promise<int> promise;
  std::future<int> future = promise.get_future();
  Helper setter([&] {
    std::this_thread::sleep_for(wait_time);
    promise.set_value(7);
  });
  const int value = future.get();  // LINE:future
  check(value == 7, "future.get");
}

void with_condition_variable() {
  std::mutex m;
  std::condition_variable cv;
  bool ready = false;
  Helper notifier([&] {
    std::this_thread::sleep_for(wait_time);
    const std::lock_guard lock(m);
    ready = true;
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return ready; });  // LINE:condition_variable
}

void with_shared_mutex() {
  std::shared_mutex shared;
  std::atomic<bool> held{false};
  Helper writer([&] {
    const std::unique_lock lock(shared);
    held = true;
    std::this_thread::sleep_for(wait_time);
  });
  while (!held) std::this_thread::yield();
  const std::shared_lock lock(shared);  // LINE:shared_mutex
}

void with_lock_guard() {
  std::mutex m;
  std::atomic<bool> held{false};
  Helper holder([&] {
    const std::lock_guard lock(m);
    held = true;
    std::this_thread::sleep_for(wait_time);
  });
  while (!held) std::this_thread::yield();
  const std::lock_guard lock(m);  // LINE:lock_guard
}

std::string sleep_command() {
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "sleep %.3f", static_cast<double>(wait_time.count()) / 1000);
  return seconds;
}

void with_popen() {
  const std::string command = sleep_command();
  check(pclose(popen(command.c_str(), "r")) == 0, "popen");  // LINE:popen
}

void with_system() {
  const std::string command = sleep_command();
  check(std::system(command.c_str()) == 0, "system");  // LINE:system
}

void with_join() {
  Helper sleeper([] { std::this_thread::sleep_for(wait_time); });
  sleeper.thread().join();  // LINE:join
}

const std::map<std::string_view, void (*)()> scenarios = {
    {"curl", with_curl},
    {"sqlite", with_sqlite},
    {"ifstream", with_ifstream},
    {"future", with_future},
    {"condition_variable", with_condition_variable},
    {"shared_mutex", with_shared_mutex},
    {"lock_guard", with_lock_guard},
    {"popen", with_popen},
    {"system", with_system},
    {"join", with_join},
};

void prepare(std::string_view scenario) {
  if (scenario == "curl") {
    check(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curl_global_init");
    prepared_curl = curl_easy_init();
    check(prepared_curl != nullptr, "curl_easy_init");
  }
  if (scenario == "sqlite") {
    const std::string path = database_path();
    check(sqlite3_open(path.c_str(), &loop_db) == SQLITE_OK, "sqlite3_open");
    check(sqlite3_open(path.c_str(), &other_db) == SQLITE_OK, "sqlite3_open");
    check(sqlite3_exec(loop_db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr) == SQLITE_OK, "CREATE TABLE");
    // Each waits out the other's lock, sleeping between tries (the holder's
    // COMMIT may meet the loop's connection between two of its tries).
    sqlite3_busy_timeout(loop_db, 10'000);
    sqlite3_busy_timeout(other_db, 10'000);
  }
}

void clean_up(std::string_view scenario) {
  if (scenario == "curl") {
    curl_easy_cleanup(prepared_curl);
    curl_global_cleanup();
  }
  if (scenario == "sqlite") {
    sqlite3_close(loop_db);
    sqlite3_close(other_db);
    unlink(database_path().c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto scenario = argc == 3 ? scenarios.find(argv[1]) : scenarios.end();
  const std::string_view length = argc == 3 ? argv[2] : "";
  if (scenario == scenarios.end() || (length != "short" && length != "long")) {
    std::fprintf(stderr, "usage: %s curl|sqlite|ifstream|future|condition_variable|shared_mutex|lock_guard|"
                 "popen|system|join short|long\n", argv[0]);
    return 2;
  }
  wait_time = length == "short" ? 5ms : 300ms;
  int status = 2;
  try {
    prepare(scenario->first);
    stallwatch::Options options;
    options.metrics_addr = "off";
    status = stallwatch::run(options, [&] {
      stallwatch::spawn(scenario->second, std::string(scenario->first)).join();
      return 0;
    });
    clean_up(scenario->first);
    std::printf("done %s %s\n", argv[1], argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
  }
  std::fflush(nullptr);
  _exit(status);
}
