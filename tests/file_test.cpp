// read_file / write_file (file.hpp) on the in_thread pool.
#include <doctest/doctest.h>

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>

#include "stallwatch/errors.hpp"
#include "stallwatch/file.hpp"
#include "stallwatch/loop.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char templ[] = "/tmp/stallwatch-file-test-XXXXXX";
    REQUIRE(mkdtemp(templ) != nullptr);
    path = templ;
  }
  ~TempDir() {
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") unlink((path + "/" + name).c_str());
      }
      closedir(d);
    }
    rmdir(path.c_str());
  }
  int entries() const {
    int n = 0;
    DIR* d = opendir(path.c_str());
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") ++n;
    }
    closedir(d);
    return n;
  }
};

std::string binary_payload(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131) ^ (i >> 7));
  return s;
}

}  // namespace

TEST_CASE("write_file then read_file round-trips binary data") {
  TempDir dir;
  sw::run([&] {
    const std::string path = dir.path + "/data.bin";
    const std::string payload = binary_payload(3 << 20);
    sw::write_file(path, payload);
    CHECK(sw::read_file(path) == payload);
    sw::write_file(path, "short");  // replaces, does not append
    CHECK(sw::read_file(path) == "short");
    sw::write_file(path, "");
    CHECK(sw::read_file(path).empty());
  });
  CHECK(dir.entries() == 1);  // no temporary file left behind
}

TEST_CASE("write_file honours the umask like any new file") {
  TempDir dir;
  const mode_t old = umask(027);
  sw::run([&] { sw::write_file(dir.path + "/m", "x"); });
  umask(old);
  struct stat st {};
  REQUIRE(stat((dir.path + "/m").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
}

TEST_CASE("errors carry errno and name the path") {
  TempDir dir;
  sw::run([&] {
    const std::string missing = dir.path + "/missing.txt";
    try {
      sw::read_file(missing);
      FAIL("read_file should throw");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find(missing) != std::string::npos);
    }
    const std::string no_dir = dir.path + "/no/such/dir/file";
    try {
      sw::write_file(no_dir, "x");
      FAIL("write_file should throw");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find(no_dir) != std::string::npos);
    }
  });
  CHECK(dir.entries() == 0);
}

TEST_CASE("other fibers run while a file is read") {
  TempDir dir;
  sw::run([&] {
    const std::string path = dir.path + "/big";
    sw::write_file(path, binary_payload(16 << 20));
    int ticks = 0;
    bool reading = true;
    auto ticker = sw::spawn([&] {
      while (reading) {
        ++ticks;
        sw::sleep_for(100us);
      }
    });
    for (int i = 0; i < 5; ++i) CHECK(sw::read_file(path).size() == (16u << 20));
    reading = false;
    ticker.join();
    CHECK(ticks > 0);
  });
}

TEST_CASE("read_file and write_file outside a loop name themselves, not in_thread") {
  CHECK_THROWS_WITH_AS(sw::read_file("/etc/hostname"),
                       "stallwatch: read_file called outside a fiber of a running loop", sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::write_file("/nonexistent/x", "data"),
                       "stallwatch: write_file called outside a fiber of a running loop", sw::not_on_loop);
}
