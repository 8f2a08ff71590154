// wait_readable / wait_writable on the loop's reactor.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

struct SocketPair {
  int fd[2];
  SocketPair() {
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd) == 0);
  }
  ~SocketPair() {
    sw::forget_fd(fd[0]);
    sw::forget_fd(fd[1]);
    close(fd[0]);
    close(fd[1]);
  }
};

std::string read_some(int fd) {
  char buf[256];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n >= 0) return std::string(buf, static_cast<std::size_t>(n));
    REQUIRE(errno == EAGAIN);
    sw::wait_readable(fd);
  }
}

}  // namespace

TEST_CASE("a reader parks until the writer fiber writes") {
  sw::run([] {
    SocketPair sp;
    auto reader = sw::spawn([&] { return read_some(sp.fd[0]); }, "reader");
    sw::sleep_for(5ms);
    CHECK_FALSE(reader.done());
    REQUIRE(write(sp.fd[1], "ping", 4) == 4);
    CHECK(reader.join() == "ping");
  });
}

TEST_CASE("wait_readable past its deadline throws deadline_exceeded") {
  sw::run([] {
    SocketPair sp;
    CHECK_THROWS_AS(sw::wait_readable(sp.fd[0], sw::deadline_after(5ms)), sw::deadline_exceeded);
    // The descriptor is still usable afterwards.
    REQUIRE(write(sp.fd[1], "x", 1) == 1);
    CHECK(read_some(sp.fd[0]) == "x");
  });
}

TEST_CASE("a writer parks while the socket buffer is full") {
  sw::run([] {
    SocketPair sp;
    std::vector<char> chunk(64 * 1024, 'z');
    std::size_t written = 0;
    while (write(sp.fd[1], chunk.data(), chunk.size()) > 0) written += chunk.size();
    REQUIRE(errno == EAGAIN);
    auto writer = sw::spawn([&] {
      sw::wait_writable(sp.fd[1], sw::deadline_after(5s));
      return true;
    });
    sw::sleep_for(5ms);
    CHECK_FALSE(writer.done());
    std::vector<char> sink(1 << 20);
    while (read(sp.fd[0], sink.data(), sink.size()) > 0) {
    }
    CHECK(writer.join());
  });
}

TEST_CASE("a peer hang-up wakes the reader, which then reads end of file") {
  sw::run([] {
    SocketPair sp;
    auto reader = sw::spawn([&] { return read_some(sp.fd[0]); });
    sw::sleep_for(2ms);
    shutdown(sp.fd[1], SHUT_WR);
    CHECK(reader.join().empty());
  });
}

TEST_CASE("cancel wakes a fiber parked on a descriptor") {
  sw::run([] {
    SocketPair sp;
    auto reader = sw::spawn([&] { sw::wait_readable(sp.fd[0]); });
    sw::yield();
    reader.cancel();
    CHECK_THROWS_AS(reader.join(), sw::cancelled);
  });
}

TEST_CASE("1,000 connections served concurrently by 1,000 fibers") {
  sw::run([] {
    std::vector<SocketPair> pairs(1000);
    std::vector<sw::Task<std::string>> readers;
    for (auto& sp : pairs) readers.push_back(sw::spawn([&sp] { return read_some(sp.fd[0]); }));
    sw::yield();
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const std::string msg = std::to_string(i);
      REQUIRE(write(pairs[i].fd[1], msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
    }
    for (std::size_t i = 0; i < readers.size(); ++i) CHECK(readers[i].join() == std::to_string(i));
  });
}
