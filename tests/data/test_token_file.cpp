#include <minimoe/data/token_file.hpp>

#include <filesystem>
#include <fstream>

#include "../test_util.hpp"
#include "temp_dir.hpp"

using namespace minimoe;

namespace {

std::vector<int32_t> read_all(const TokenFile& f) {
  std::vector<int32_t> out(static_cast<size_t>(f.size()));
  f.copy(0, f.size(), out.data());
  return out;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Overwrites a little-endian header field of the file at `path`.
template <typename Field>
void patch(const std::string& path, size_t offset, Field value) {
  std::string bytes = read_file(path);
  std::memcpy(bytes.data() + offset, &value, sizeof value);
  write_bytes(path, bytes);
}

}  // namespace

TEST_CASE("a token file round-trips as uint16 up to a vocab of 65536") {
  test::TempDir dir;
  const std::string path = dir.file("small.tokens");
  const std::vector<int32_t> ids{0, 65535, 7, 300, 65535, 1};
  write_token_file(path, ids, 65536);
  CHECK(std::filesystem::file_size(path) == 32 + 2 * ids.size());
  const TokenFile f = TokenFile::open(path);
  CHECK(f.path() == path);
  CHECK(f.size() == 6);
  CHECK(f.vocab_size() == 65536);
  CHECK(f.token_bytes() == 2);
  CHECK(f[1] == 65535);
  CHECK(read_all(f) == ids);
  std::vector<int32_t> window(3);
  f.copy(2, 3, window.data());
  CHECK(window == std::vector<int32_t>{7, 300, 65535});
}

TEST_CASE("a token file round-trips as uint32 above a vocab of 65536") {
  test::TempDir dir;
  const std::string path = dir.file("large.tokens");
  const std::vector<int32_t> ids{65536, 0, 2147483647, 12};
  write_token_file(path, ids, kMaxTokenVocab);
  CHECK(std::filesystem::file_size(path) == 32 + 4 * ids.size());
  const TokenFile f = TokenFile::open(path);
  CHECK(f.token_bytes() == 4);
  CHECK(f.vocab_size() == kMaxTokenVocab);
  CHECK(f[2] == 2147483647);
  CHECK(read_all(f) == ids);
  write_token_file(path, {65536}, 65537);
  CHECK(TokenFile::open(path).token_bytes() == 4);
}

TEST_CASE("an empty token file is valid, and a rewrite replaces the file") {
  test::TempDir dir;
  const std::string path = dir.file("empty.tokens");
  write_token_file(path, {}, 10);
  CHECK(TokenFile::open(path).size() == 0);
  write_token_file(path, {4, 5}, 10);
  CHECK(read_all(TokenFile::open(path)) == std::vector<int32_t>{4, 5});
}

TEST_CASE("a token file moves, keeping its mapping") {
  test::TempDir dir;
  write_token_file(dir.file("a.tokens"), {1, 2, 3}, 4);
  write_token_file(dir.file("b.tokens"), {3}, 4);
  TokenFile a = TokenFile::open(dir.file("a.tokens"));
  TokenFile moved(std::move(a));
  CHECK(read_all(moved) == std::vector<int32_t>{1, 2, 3});
  moved = TokenFile::open(dir.file("b.tokens"));
  CHECK(read_all(moved) == std::vector<int32_t>{3});
  a = std::move(moved);
  CHECK(a.path() == dir.file("b.tokens"));
  CHECK(a[0] == 3);
}

TEST_CASE("reads outside a token file are IndexErrors") {
  test::TempDir dir;
  const std::string path = dir.file("t.tokens");
  write_token_file(path, {1, 2, 3}, 4);
  const TokenFile f = TokenFile::open(path);
  std::vector<int32_t> out(4);
  CHECK_THROWS_WITH_AS(
      f[3], fmt::format("TokenFile '{}': index 3 out of range [0, 3)", path).c_str(), IndexError);
  CHECK_THROWS_WITH_AS(
      f[-1], fmt::format("TokenFile '{}': index -1 out of range [0, 3)", path).c_str(), IndexError);
  CHECK_THROWS_WITH_AS(
      f.copy(1, 3, out.data()),
      fmt::format("TokenFile '{}': window [1, 4) out of range [0, 3)", path).c_str(), IndexError);
  CHECK_THROWS_WITH_AS(
      f.copy(-1, 1, out.data()),
      fmt::format("TokenFile '{}': window [-1, 0) out of range [0, 3)", path).c_str(), IndexError);
}

TEST_CASE("write_token_file rejects tokens outside the vocab") {
  test::TempDir dir;
  const std::string path = dir.file("bad.tokens");
  CHECK_THROWS_WITH_AS(write_token_file(path, {1, 5, 2}, 5),
                       "write_token_file: token 5 at position 1 outside [0, 5)", ValueError);
  CHECK_THROWS_WITH_AS(write_token_file(path, {-1}, 5),
                       "write_token_file: token -1 at position 0 outside [0, 5)", ValueError);
  CHECK_THROWS_WITH_AS(write_token_file(path, {}, 0),
                       "write_token_file: vocab size 0 outside [1, 2147483648]", ValueError);
  CHECK_THROWS_WITH_AS(write_token_file(path, {}, kMaxTokenVocab + 1),
                       "write_token_file: vocab size 2147483649 outside [1, 2147483648]",
                       ValueError);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("opening a missing file or a directory is an IOError") {
  test::TempDir dir;
  const std::string missing = dir.file("missing.tokens");
  CHECK_THROWS_WITH_AS(TokenFile::open(missing),
                       fmt::format("cannot open '{}': No such file or directory", missing).c_str(),
                       IOError);
  const std::string folder = dir.file("folder");
  std::filesystem::create_directory(folder);
  CHECK_THROWS_WITH_AS(TokenFile::open(folder),
                       fmt::format("cannot map '{}': not a regular file", folder).c_str(), IOError);
}

TEST_CASE("every corrupt or truncated token file is a FormatError naming the problem") {
  test::TempDir dir;
  const std::string path = dir.file("corrupt.tokens");
  auto fresh = [&] { write_token_file(path, {1, 7, 3}, 10); };  // uint16, 38 bytes
  auto expect = [&](const std::string& problem) {
    CHECK_THROWS_WITH_AS(TokenFile::open(path),
                         fmt::format("token file '{}': {}", path, problem).c_str(), FormatError);
  };

  write_bytes(path, "");
  expect("0 bytes, shorter than the 32-byte header");
  fresh();
  write_bytes(path, read_file(path).substr(0, 31));
  expect("31 bytes, shorter than the 32-byte header");

  fresh();
  patch(path, 0, 'X');
  expect("bad magic, not a minimoe token file");
  fresh();
  patch(path, 8, uint32_t{2});
  expect("version 2 is not supported (expected 1)");
  fresh();
  patch(path, 12, uint32_t{3});
  expect("3 bytes per token, expected 2 (uint16) or 4 (uint32)");
  fresh();
  patch(path, 24, uint64_t{0});
  expect("vocab size 0 outside [1, 2147483648]");
  fresh();
  patch(path, 24, uint64_t{1} << 40);
  expect("vocab size 1099511627776 outside [1, 2147483648]");

  fresh();
  write_bytes(path, read_file(path).substr(0, 36));  // cut in the last token
  expect("the header counts 3 tokens of 2 bytes, but 4 bytes follow it");
  fresh();
  write_bytes(path, read_file(path).substr(0, 37));  // cut inside the last token
  expect("the header counts 3 tokens of 2 bytes, but 5 bytes follow it");
  fresh();
  write_bytes(path, read_file(path) + "xy");
  expect("the header counts 3 tokens of 2 bytes, but 8 bytes follow it");
  fresh();
  patch(path, 16, uint64_t{1} << 63);  // a count whose byte size would overflow
  expect("the header counts 9223372036854775808 tokens of 2 bytes, but 6 bytes follow it");
  fresh();
  patch(path, 12, uint32_t{4});  // 6 bytes are 1.5 uint32 tokens
  expect("the header counts 3 tokens of 4 bytes, but 6 bytes follow it");

  fresh();
  patch(path, 24, uint64_t{5});
  expect("token 7 at position 1 is not below the vocab size 5");
  write_token_file(path, {1, 2, 70000}, 70001);  // uint32
  patch(path, 24, uint64_t{70000});
  expect("token 70000 at position 2 is not below the vocab size 70000");
}
