#include "core/parking.hpp"

#include <string>

#include "stallwatch/errors.hpp"

namespace stallwatch::core {

void throw_cancelled(const char* what) { throw cancelled(std::string("stallwatch: ") + what + ": fiber cancelled"); }

void throw_deadline_exceeded(const char* what) {
  throw deadline_exceeded(std::string("stallwatch: ") + what + ": deadline exceeded");
}

void throw_primitive_destroyed(const char* what) {
  // what is "Primitive::call": name the primitive on its own as well.
  const std::string call(what);
  const std::string primitive = call.substr(0, call.find("::"));
  throw primitive_destroyed("stallwatch: " + call + ": the " + primitive +
                            " was destroyed while this fiber waited on it");
}

}  // namespace stallwatch::core
