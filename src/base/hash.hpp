// FNV-1a, the one hash behind stack ids and call-site keys: stable across
// runs, so a stack id in a log can be grepped for in the next day's logs.
// Any thread; async-signal-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace stallwatch::base {

class Fnv1a {
 public:
  // Mixes in the eight bytes of v, lowest first.
  void add(std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) {
      hash_ ^= (v >> (i * 8)) & 0xff;
      hash_ *= prime;
    }
  }
  void add(std::string_view bytes) noexcept {
    for (const char c : bytes) {
      hash_ ^= static_cast<unsigned char>(c);
      hash_ *= prime;
    }
  }
  std::uint64_t value() const noexcept { return hash_; }

 private:
  static constexpr std::uint64_t offset_basis = 1469598103934665603ull;
  static constexpr std::uint64_t prime = 1099511628211ull;
  std::uint64_t hash_ = offset_basis;
};

}  // namespace stallwatch::base
