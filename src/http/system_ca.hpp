// The system CA store for the HTTP client's HTTPS requests, parsed once per
// process on the offload pool rather than on the loop.
//
// Left to itself, curl parses its CA bundle (some 140 certificates, ~40 ms of
// CPU) during the first handshake of each loop's multi handle, on the loop,
// and again for every new connection of a handle that also has a CA blob.
// Instead the bundle is parsed once into an OpenSSL X509_STORE by a pool
// thread, and each connection's SSL_CTX is handed that store
// (CURLOPT_SSL_CTX_FUNCTION). That needs curl's TLS library to be OpenSSL
// (Debian's libcurl4) and libcurl 7.84 (CURLINFO_CAINFO, curl's bundle path);
// otherwise curl loads the bundle itself, as before. Built from
// system_ca_openssl.cpp with OpenSSL's headers, else system_ca_none.cpp.
#pragma once

#include <curl/curl.h>

namespace stallwatch::http_client {

// Sets `easy`'s CA options for one HTTPS-capable request: trust exactly the
// CAs of `ca_blob` (the PEM text of a request's CA file) when it is not
// null, else the system store. Loop thread, from a fiber: the first call
// that needs the system store parks while a pool thread parses it.
void set_trusted_cas(CURL* easy, const curl_blob* ca_blob);

}  // namespace stallwatch::http_client
