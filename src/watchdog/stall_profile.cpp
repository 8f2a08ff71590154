#include "watchdog/stall_profile.hpp"

#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <system_error>

#include "base/system_error.hpp"
#include "stallwatch/watchdog.hpp"

namespace stallwatch::watchdog {
namespace {

struct Profile {
  std::mutex mutex;
  std::map<std::string, std::uint64_t> stacks;  // folded key → stalled ns
};

Profile& profile() {
  static Profile* p = new Profile;  // never destroyed: the watchdog may outlive statics
  return *p;
}

// Folded format separates frames with ';' and ends with " <count>": keep both
// out of frame names.
std::string folded_frame(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (c == ';' || c == '\n' || c == '\r') c = '_';
  }
  return out;
}

}  // namespace

void profile_add(const std::vector<std::string>& frames_leaf_first, std::uint64_t ns) {
  if (frames_leaf_first.empty() || ns == 0) return;
  std::string key;
  for (auto it = frames_leaf_first.rbegin(); it != frames_leaf_first.rend(); ++it) {
    if (!key.empty()) key.push_back(';');
    key += folded_frame(*it);
  }
  Profile& p = profile();
  std::lock_guard lock(p.mutex);
  p.stacks[key] += ns;
}

std::string profile_folded() {
  Profile& p = profile();
  std::lock_guard lock(p.mutex);
  std::string out;
  for (const auto& [key, ns] : p.stacks) {
    const std::uint64_t us = (ns + 500) / 1000;
    if (us == 0) continue;
    out += key;
    out += ' ';
    out += std::to_string(us);
    out += '\n';
  }
  return out;
}

void profile_reset() {
  Profile& p = profile();
  std::lock_guard lock(p.mutex);
  p.stacks.clear();
}

}  // namespace stallwatch::watchdog

namespace stallwatch {
inline namespace v1 {

std::string stall_profile_folded() { return watchdog::profile_folded(); }

void write_stall_profile(const std::string& path) {
  const std::string text = watchdog::profile_folded();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) base::throw_errno(errno, "cannot open " + tmp);
    out << text;
    out.flush();
    if (!out) base::throw_errno(errno, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    base::throw_errno(err, "cannot rename " + tmp + " to " + path);
  }
}

void reset_stall_profile() { watchdog::profile_reset(); }

}  // namespace v1
}  // namespace stallwatch
