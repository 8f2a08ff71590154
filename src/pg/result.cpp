// Result: rows of a PGresult, read in text format.
#include <libpq-fe.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "stallwatch/pg.hpp"

namespace stallwatch::inline v1::pg {

int Result::size() const noexcept { return res_ ? PQntuples(res_.get()) : 0; }
int Result::columns() const noexcept { return res_ ? PQnfields(res_.get()) : 0; }

std::int64_t Result::affected() const noexcept {
  if (!res_) return 0;
  const char* n = PQcmdTuples(res_.get());
  return n != nullptr && *n != '\0' ? std::strtoll(n, nullptr, 10) : 0;
}

std::string_view Result::column_name(int col) const {
  if (col < 0 || col >= columns()) {
    throw std::out_of_range("stallwatch: pg result: column " + std::to_string(col) + " is outside its " +
                            std::to_string(columns()) + " columns");
  }
  return PQfname(res_.get(), col);
}

int Result::column(std::string_view name) const {
  for (int c = 0; c < columns(); ++c) {
    if (name == PQfname(res_.get(), c)) return c;
  }
  throw error("stallwatch: pg result has no column \"" + std::string(name) + "\"", "", "no such column", "", "");
}

void Result::check(int row, int col) const {
  if (col < 0 || col >= columns() || row < 0 || row >= size()) {
    throw std::out_of_range("stallwatch: pg result: row " + std::to_string(row) + ", column " + std::to_string(col) +
                            " is outside its " + std::to_string(size()) + " rows and " + std::to_string(columns()) +
                            " columns");
  }
}

bool Result::is_null(int row, int col) const {
  check(row, col);
  return PQgetisnull(res_.get(), row, col) == 1;
}

std::string_view Result::value(int row, int col) const {
  check(row, col);
  return {PQgetvalue(res_.get(), row, col), static_cast<std::size_t>(PQgetlength(res_.get(), row, col))};
}

namespace detail {

void throw_conversion(const pg_result* res, int row, int col, const char* type, bool was_null) {
  const std::string column = "row " + std::to_string(row) + ", column " + std::to_string(col) + " (\"" +
                             PQfname(res, col) + "\")";
  const std::string message =
      was_null ? column + " is NULL: read it as a std::optional"
               : column + " holds \"" + std::string(PQgetvalue(res, row, col)).substr(0, 64) + "\", not " + type;
  throw error("stallwatch: pg result: " + message, "", message, "", "");
}

}  // namespace detail

}  // namespace stallwatch::inline v1::pg
