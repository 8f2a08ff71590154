// StatementCache: which statements a connection prepares.
#include "pg/statement_cache.hpp"

#include <stdexcept>
#include <utility>

namespace stallwatch::inline v1::pg::detail {

void check(const ConnectOptions& options) {
  if (options.prepare_threshold && *options.prepare_threshold < 0) {
    throw std::invalid_argument("stallwatch: pg::ConnectOptions::prepare_threshold is " +
                                std::to_string(*options.prepare_threshold) +
                                "; accepted: 0 (prepare on the first run) or more, or std::nullopt (never prepare)");
  }
  if (options.prepared_max < 0) {
    throw std::invalid_argument("stallwatch: pg::ConnectOptions::prepared_max is " +
                                std::to_string(options.prepared_max) + "; accepted: 0 (never prepare) or more");
  }
}

std::string statement_key(std::string_view sql, const std::vector<Param>& params) {
  // The types decide the statement as much as the text: "$1" as an int8 and
  // as text are two statements.
  std::string key(sql);
  key += '\0';
  for (const Param& p : params) key += std::to_string(p.oid) + ',';
  return key;
}

template <class V>
V* StatementCache::Lru<V>::find(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second);
  return &it->second->second;
}

template <class V>
std::optional<std::pair<std::string, V>> StatementCache::Lru<V>::insert(const std::string& key, V value) {
  std::optional<std::pair<std::string, V>> evicted;
  if (order_.size() >= capacity_ && !order_.empty()) {
    index_.erase(order_.back().first);
    evicted = std::move(order_.back());
    order_.pop_back();
  }
  order_.emplace_front(key, std::move(value));
  index_.emplace(order_.front().first, order_.begin());
  return evicted;
}

template <class V>
void StatementCache::Lru<V>::erase(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  auto node = it->second;
  index_.erase(it);
  order_.erase(node);
}

template <class V>
void StatementCache::Lru<V>::clear() {
  index_.clear();
  order_.clear();
}

StatementCache::StatementCache(const ConnectOptions& options)
    : threshold_(options.prepared_max > 0 ? options.prepare_threshold : std::nullopt),
      runs_(static_cast<std::size_t>(options.prepared_max)),
      statements_(static_cast<std::size_t>(options.prepared_max)) {}

StatementCache::Plan StatementCache::plan(const std::string& key) {
  if (!threshold_) return {};
  if (Statement* s = statements_.find(key)) {
    // One in flight: runs go unnamed until the server has accepted it.
    if (!s->ready) return {};
    return {Plan::run_prepared, s->name};
  }
  int* runs = runs_.find(key);
  const int before = runs != nullptr ? *runs : 0;
  if (before < *threshold_) {
    if (runs != nullptr) {
      ++*runs;
    } else {
      runs_.insert(key, 1);
    }
    return {};
  }
  runs_.erase(key);
  std::string name = "stallwatch_" + std::to_string(++serial_);
  // An evicted statement is closed after the runs already sent: the server
  // takes the pipeline in order.
  if (auto evicted = statements_.insert(key, Statement{name, false})) to_close_.push_back(evicted->second.name);
  return {Plan::prepare_and_run, std::move(name)};
}

void StatementCache::parsed(const std::string& key, const std::string& name, bool ok) {
  Statement* s = statements_.find(key);
  if (s == nullptr || s->name != name) return;  // evicted or cleared meanwhile
  if (ok) {
    s->ready = true;
  } else {
    statements_.erase(key);  // counted afresh; it may parse later (a table made since)
  }
}

void StatementCache::forget(const std::string& key, const std::string& name, bool close) {
  Statement* s = statements_.find(key);
  if (s == nullptr || s->name != name) return;
  statements_.erase(key);
  if (close) to_close_.push_back(name);
}

void StatementCache::clear() { statements_.clear(); }

std::vector<std::string> StatementCache::take_to_close() { return std::exchange(to_close_, {}); }

}  // namespace stallwatch::inline v1::pg::detail
