#include "core/parking.hpp"

#include <string>

#include "stallwatch/errors.hpp"

namespace stallwatch::core {

void throw_cancelled(const char* what) { throw cancelled(std::string("stallwatch: ") + what + ": fiber cancelled"); }

void throw_deadline_exceeded(const char* what) {
  throw deadline_exceeded(std::string("stallwatch: ") + what + ": deadline exceeded");
}

}  // namespace stallwatch::core
