#include "symbolize/shared_symbolizer.hpp"

namespace stallwatch::symbolize {

SharedSymbolizer& shared_symbolizer() {
  static SharedSymbolizer* s = new SharedSymbolizer;  // never destroyed, see the header
  return *s;
}

}  // namespace stallwatch::symbolize
