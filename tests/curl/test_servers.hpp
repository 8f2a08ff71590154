// Servers for the curl and http tests, on 127.0.0.1 only, started and
// stopped by the tests themselves (plain threads, off any loop).
//
// HttpServer: a threaded HTTP/1.1 server (a thread per connection,
// keep-alive) with the paths the tests need:
//   /small            200, "hello"
//   /status/N         status N, body "status N"
//   /echo             200, the request body back (POST)
//   /bytes/N          200, N bytes of a known pattern (Content-Length)
//   /hang             reads the request, never answers
//   /reset            promises 1 MiB, sends 64 KiB, resets the connection
//   /stall            promises 1 MiB, sends 64 KiB, then waits until stopped
//   /redirect/N       302 to /redirect/N-1; /redirect/0 is /small
//   /request          200, the request's head (request line and headers)
//                     and then "body N" (N: the request body's length); to
//                     HEAD, the status and headers only
// It counts the connections it accepted.
//
// Nginx: nginx with a self-signed certificate for 127.0.0.1 made with
// openssl (and a second, unrelated CA), in a temporary directory of its own; `return 200 "hello"` at /.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_servers {

inline char pattern_byte(std::uint64_t i) { return static_cast<char>('a' + (i % 26)); }

class HttpServer {
 public:
  // address: a loopback address, 127.0.0.1 unless told.
  explicit HttpServer(in_addr_t address = htonl(INADDR_LOOPBACK)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = address;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 1024) != 0) {
      throw std::runtime_error("test server: bind/listen failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~HttpServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  int connections() const { return connections_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      ++connections_;
      std::lock_guard lock(mutex_);
      open_fds_.push_back(fd);
      workers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  static bool send_all(int fd, const char* data, std::size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }
  static bool send_all(int fd, const std::string& s) { return send_all(fd, s.data(), s.size()); }

  static std::string head(int status, std::uint64_t length, const std::string& extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(length) +
           "\r\nX-Test-Header: yes\r\n" + extra + "\r\n";
  }

  void close_fd(int fd) {
    std::lock_guard lock(mutex_);
    std::erase(open_fds_, fd);
    ::close(fd);
  }

  void serve(int fd) {
    // Below the loop under test, which shares the machine's two cores with
    // this server's threads (root may lower a thread's priority; others too).
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    std::string in;
    char buf[65536];
    for (;;) {
      std::size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r <= 0) return close_fd(fd);
        in.append(buf, static_cast<std::size_t>(r));
      }
      const std::string header = in.substr(0, end + 4);
      in.erase(0, end + 4);
      std::uint64_t length = 0;
      for (const char* name : {"Content-Length: ", "content-length: "}) {
        const std::size_t at = header.find(name);
        if (at != std::string::npos) length = std::strtoull(header.c_str() + at + std::strlen(name), nullptr, 10);
      }
      while (in.size() < length) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r <= 0) return close_fd(fd);
        in.append(buf, static_cast<std::size_t>(r));
      }
      const std::string body = in.substr(0, length);
      in.erase(0, length);
      const std::size_t sp = header.find(' ');
      const std::string path = header.substr(sp + 1, header.find(' ', sp + 1) - sp - 1);
      if (path == "/request") {
        const std::string text = header + "body " + std::to_string(body.size());
        const bool head_only = header.rfind("HEAD ", 0) == 0;
        if (!send_all(fd, head(200, text.size()) + (head_only ? "" : text))) return close_fd(fd);
        continue;
      }
      if (!respond(fd, path, body)) return close_fd(fd);
    }
  }

  // False: the connection is done.
  bool respond(int fd, const std::string& path, const std::string& body) {
    if (path == "/small") return send_all(fd, head(200, 5) + "hello");
    if (path.rfind("/status/", 0) == 0) {
      const std::string text = "status " + path.substr(8);
      return send_all(fd, head(std::atoi(path.c_str() + 8), text.size()) + text);
    }
    if (path == "/echo") return send_all(fd, head(200, body.size()) + body);
    if (path.rfind("/bytes/", 0) == 0) {
      const std::uint64_t n = std::strtoull(path.c_str() + 7, nullptr, 10);
      if (!send_all(fd, head(200, n))) return false;
      // The pattern repeats every 26 bytes: a chunk is a window into it.
      constexpr std::size_t chunk = 1 << 20;
      static const std::string pattern = [] {
        std::string p(chunk + 26, '\0');
        for (std::size_t i = 0; i < p.size(); ++i) p[i] = pattern_byte(i);
        return p;
      }();
      for (std::uint64_t sent = 0; sent < n;) {
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, n - sent));
        if (!send_all(fd, pattern.data() + sent % 26, k)) return false;
        sent += k;
      }
      return true;
    }
    if (path == "/hang") {
      while (!stopping_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return false;
    }
    if (path == "/reset" || path == "/stall") {
      send_all(fd, head(200, 1 << 20));
      send_all(fd, std::string(64 << 10, 'x'));
      if (path == "/reset") {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        linger l{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        return false;
      }
      while (!stopping_) {
        char c;
        if (::recv(fd, &c, 1, MSG_DONTWAIT) == 0) return false;  // the client gave up: it closed
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      return false;
    }
    if (path.rfind("/redirect/", 0) == 0) {
      const int n = std::atoi(path.c_str() + 10);
      const std::string to = n == 0 ? "/small" : "/redirect/" + std::to_string(n - 1);
      return send_all(fd, head(302, 0, "Location: " + to + "\r\n"));
    }
    return send_all(fd, head(404, 9) + "not found");
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> open_fds_;
  std::vector<std::thread> workers_;
};

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline void run_or_throw(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

// nginx serving HTTPS (and HTTP on a second port) from a temporary
// directory; workers: how many worker processes; cpu: pin them (-1: no).
class Nginx {
 public:
  explicit Nginx(int workers = 1, const std::string& cpu_list = "") {
    char dir_template[] = "/tmp/stallwatch-nginx-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    ::chmod(dir_.c_str(), 0755);
    https_port_ = free_port();
    http_port_ = free_port();
    run_or_throw("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1"
                 " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " + dir_ + "/key.pem -out " + dir_ +
                 "/cert.pem 2>/dev/null");
    // A second CA that signed nothing nginx serves: trusting only it fails.
    run_or_throw("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=other"
                 " -keyout " + dir_ + "/other-key.pem -out " + dir_ + "/other.pem 2>/dev/null");
    std::ofstream conf(dir_ + "/nginx.conf");
    conf << "worker_processes " << workers << ";\n"
         << "pid " << dir_ << "/nginx.pid;\nerror_log " << dir_ << "/error.log;\ndaemon off;\nmaster_process on;\n"
         << "events { worker_connections 4096; }\n"
         << "http {\n access_log off;\n keepalive_requests 1000000;\n"
         << " client_body_temp_path " << dir_ << "/body;\n proxy_temp_path " << dir_ << "/proxy;\n"
         << " fastcgi_temp_path " << dir_ << "/fastcgi;\n uwsgi_temp_path " << dir_ << "/uwsgi;\n"
         << " scgi_temp_path " << dir_ << "/scgi;\n"
         << " server {\n  listen 127.0.0.1:" << https_port_ << " ssl http2;\n  listen 127.0.0.1:" << http_port_
         << ";\n  ssl_certificate " << dir_ << "/cert.pem;\n  ssl_certificate_key " << dir_ << "/key.pem;\n"
         << "  location / { default_type text/plain; return 200 \"hello\"; }\n }\n}\n";
    conf.close();
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!cpu_list.empty()) {
        const std::string pinned = "exec taskset -c " + cpu_list + " nginx -p " + dir_ + " -c " + dir_ + "/nginx.conf";
        ::execl("/bin/sh", "sh", "-c", pinned.c_str(), static_cast<char*>(nullptr));
      }
      ::execlp("nginx", "nginx", "-p", dir_.c_str(), "-c", (dir_ + "/nginx.conf").c_str(), static_cast<char*>(nullptr));
      ::execl("/usr/sbin/nginx", "nginx", "-p", dir_.c_str(), "-c", (dir_ + "/nginx.conf").c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    wait_listening(https_port_);
    wait_listening(http_port_);
  }

  ~Nginx() {
    ::kill(pid_, SIGQUIT);
    int status = 0;
    for (int i = 0; i < 500 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, WNOHANG);
    std::system(("rm -rf " + dir_).c_str());
  }

  std::string https_url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(https_port_) + path;
  }
  std::string http_url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(http_port_) + path;
  }
  std::string ca_file() const { return dir_ + "/cert.pem"; }
  std::string other_ca_file() const { return dir_ + "/other.pem"; }

 private:
  static void wait_listening(int port) {
    for (int i = 0; i < 1000; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<std::uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("nginx did not start listening on port " + std::to_string(port));
  }

  std::string dir_;
  int https_port_ = 0;
  int http_port_ = 0;
  pid_t pid_ = -1;
};

// stallwatch-demo (examples/demo) on a free loopback port, without the
// probes or strict mode the test itself may run under; stopped with SIGTERM.
class Demo {
 public:
  explicit Demo(const std::string& program) : port_(free_port()) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::unsetenv("LD_PRELOAD");
      ::unsetenv("STALLWATCH_STRICT");
      ::setenv("STALLWATCH_METRICS_ADDR", "off", 1);
      const std::string port = std::to_string(port_);
      ::execl(program.c_str(), program.c_str(), "--port", port.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 1000; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<std::uint16_t>(port_));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("stallwatch-demo did not start listening");
  }
  ~Demo() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  int port_;
  pid_t pid_ = -1;
};

}  // namespace test_servers
