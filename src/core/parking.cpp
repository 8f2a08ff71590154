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

void throw_operation_deadline_exceeded(const std::string& operation, std::chrono::nanoseconds after) {
  // Rounded to the nearest millisecond: deadline_after(500ms) taken just
  // before the call lies a few microseconds short of 500 ms at its start.
  const auto ms = after.count() <= 0 ? 0 : (after.count() + 500'000) / 1'000'000;
  throw deadline_exceeded("stallwatch: " + operation + ": deadline exceeded after " + std::to_string(ms) + " ms");
}

void throw_operation_cancelled(const std::string& operation) {
  throw cancelled("stallwatch: " + operation + ": cancelled");
}

}  // namespace stallwatch::core
