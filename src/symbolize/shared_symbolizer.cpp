#include "symbolize/shared_symbolizer.hpp"

namespace stallwatch::symbolize {
namespace {

SharedSymbolizer*& current() {
  static SharedSymbolizer* s = new SharedSymbolizer;  // never destroyed, see the header
  return s;
}

}  // namespace

SharedSymbolizer& shared_symbolizer() { return *current(); }

void replace_shared_symbolizer_in_child() { current() = new SharedSymbolizer; }

}  // namespace stallwatch::symbolize
