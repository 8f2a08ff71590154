// Without OpenSSL's headers: curl loads its CA bundle itself (on the loop, at
// the first handshake of each loop's multi handle; system_ca.hpp).
#include "http/system_ca.hpp"

namespace stallwatch::http_client {

void set_trusted_cas(CURL* easy, const curl_blob* ca_blob) {
  // No CA directory, whose files OpenSSL would open on the loop at each
  // handshake; the bundle file stays curl's default.
  curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
  curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, ca_blob);
}

}  // namespace stallwatch::http_client
