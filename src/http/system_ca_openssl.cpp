// The system CA store parsed once per process by a pool thread and handed to
// each connection's SSL_CTX (system_ca.hpp).
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

#include "http/system_ca.hpp"
#include "stallwatch/in_thread.hpp"

namespace stallwatch::http_client {
namespace {

// curl's own CA bundle (CURLINFO_CAINFO of a fresh handle), parsed; nullptr
// when curl's TLS library is not OpenSSL, libcurl predates 7.84, or the
// bundle cannot be read (curl then loads it itself, and says what failed).
// Kept for the process's life. Pool thread.
X509_STORE* load_system_store() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  if (info->ssl_version == nullptr || std::strncmp(info->ssl_version, "OpenSSL/", 8) != 0) return nullptr;
  if (info->version_num < 0x075400) return nullptr;
  CURL* fresh = curl_easy_init();
  if (fresh == nullptr) return nullptr;
  char* path = nullptr;
  curl_easy_getinfo(fresh, CURLINFO_CAINFO, &path);
  const std::string bundle = path != nullptr ? path : "";
  curl_easy_cleanup(fresh);
  if (bundle.empty()) return nullptr;
  X509_STORE* store = X509_STORE_new();
  if (store != nullptr && X509_STORE_load_locations(store, bundle.c_str(), nullptr) == 1) return store;
  X509_STORE_free(store);
  return nullptr;
}

struct SystemStore {
  std::atomic<bool> loaded{false};
  X509_STORE* store = nullptr;  // written once, before `loaded`
};

SystemStore& system_store() {
  static auto* s = new SystemStore;  // leaked: connections may outlive static destructors
  return *s;
}

// The parsed store, loading it on the pool the first time (other loops'
// first callers wait there too, on the pool thread's once flag).
X509_STORE* system_ca_store() {
  SystemStore& s = system_store();
  if (!s.loaded.load(std::memory_order_acquire)) {
    in_thread([&s] {
      static std::once_flag once;
      std::call_once(once, [&s] {
        s.store = load_system_store();
        s.loaded.store(true, std::memory_order_release);
      });
    });
  }
  return s.store;
}

// CURLOPT_SSL_CTX_FUNCTION: after curl set the context up, before the
// handshake; the context takes a reference to the shared store.
CURLcode use_store(CURL*, void* ssl_ctx, void* store) {
  SSL_CTX_set1_cert_store(static_cast<SSL_CTX*>(ssl_ctx), static_cast<X509_STORE*>(store));
  return CURLE_OK;
}

}  // namespace

void set_trusted_cas(CURL* easy, const curl_blob* ca_blob) {
  // No CA directory, whose files OpenSSL would open on the loop at each handshake.
  curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
  X509_STORE* store = system_ca_store();
  if (store == nullptr) {  // curl loads its bundle itself
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, ca_blob);
    return;
  }
  // curl loads no bundle file: a request's CA file is all it trusts, and
  // the system store comes parsed.
  curl_easy_setopt(easy, CURLOPT_CAINFO, nullptr);
  curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, ca_blob);
  curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, ca_blob != nullptr ? nullptr : &use_store);
  curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, ca_blob != nullptr ? nullptr : store);
}

}  // namespace stallwatch::http_client
