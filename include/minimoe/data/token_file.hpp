// minimoe/data/token_file.hpp: a tokenised text on disk, memory-mapped for reading.
//
// Layout (little-endian, 32-byte header, so the tokens that follow are aligned):
//   bytes 0..7     magic "MMTOKENS"
//   bytes 8..11    format version, uint32: 1
//   bytes 12..15   bytes per token, uint32: 2 (uint16 tokens) or 4 (uint32 tokens)
//   bytes 16..23   token count N, uint64
//   bytes 24..31   vocab size V, uint64: every token is below it
//   the rest       the N tokens, nothing after them
//
//   write_token_file("data/story.tokens", ids, /*vocab_size=*/4096);   // uint16: V <= 65536
//   TokenFile story = TokenFile::open("data/story.tokens");
//   int32_t first = story[0];
//   std::vector<int32_t> window(65);
//   story.copy(/*start=*/1000, 65, window.data());
//
// open() maps the file read-only instead of reading it: a corpus costs no heap, its pages are
// shared between processes and loaded on first use. The reader trusts nothing: the header is
// checked field by field against the file's length, and every token once against the vocab
// size (one pass over the file), so that a corrupt id fails here, naming the file, rather
// than as an out-of-range embedding row far from its cause. write_token_file replaces a file
// by renaming a new one over it, so a file a reader has mapped never changes under it.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "minimoe/error.hpp"
#include "minimoe/io/atomic_file.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token files are little-endian and are mapped and written without swapping");

namespace minimoe {

// Tokens are handed out as int32, so every id must fit one.
inline constexpr int64_t kMaxTokenVocab = int64_t{1} << 31;

namespace detail {

inline constexpr char kTokenFileMagic[8] = {'M', 'M', 'T', 'O', 'K', 'E', 'N', 'S'};
inline constexpr uint32_t kTokenFileVersion = 1;

struct TokenFileHeader {
  char magic[8];
  uint32_t version;
  uint32_t token_bytes;
  uint64_t count;
  uint64_t vocab_size;
};
static_assert(sizeof(TokenFileHeader) == 32, "the header is 32 bytes, without padding");

}  // namespace detail

// Writes `ids` as uint16 when vocab_size <= 65536, else as uint32. ValueError when a token is
// outside [0, vocab_size); IOError when the file cannot be written.
inline void write_token_file(const std::string& path, const std::vector<int32_t>& ids,
                             int64_t vocab_size) {
  check<ValueError>(vocab_size >= 1 && vocab_size <= kMaxTokenVocab,
                    "write_token_file: vocab size {} outside [1, {}]", vocab_size, kMaxTokenVocab);
  for (size_t i = 0; i < ids.size(); ++i)
    check<ValueError>(ids[i] >= 0 && ids[i] < vocab_size,
                      "write_token_file: token {} at position {} outside [0, {})", ids[i], i,
                      vocab_size);
  detail::TokenFileHeader header{};
  std::memcpy(header.magic, detail::kTokenFileMagic, sizeof header.magic);
  header.version = detail::kTokenFileVersion;
  header.token_bytes = vocab_size <= 65536 ? 2 : 4;
  header.count = ids.size();
  header.vocab_size = static_cast<uint64_t>(vocab_size);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(&header), sizeof header);
    if (header.token_bytes == 4) {
      out.write(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
    } else {
      const std::vector<uint16_t> narrow(ids.begin(), ids.end());
      out.write(reinterpret_cast<const char*>(narrow.data()), narrow.size() * sizeof(uint16_t));
    }
  });
}

// A read-only view of a token file. Move-only: it owns the mapping, which is unmapped with its
// last owner. A moved-from TokenFile may only be assigned to or destroyed.
class TokenFile {
 public:
  // Maps and validates the file: IOError when it cannot be opened or mapped, FormatError
  // naming the file and the problem when its content is not a valid token file.
  static TokenFile open(const std::string& path) {
    TokenFile file(path);
    file.map();
    file.validate();
    return file;
  }

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }  // tokens
  int64_t vocab_size() const { return vocab_size_; }
  int64_t token_bytes() const { return token_bytes_; }  // 2 or 4

  int32_t operator[](int64_t i) const {
    check<IndexError>(i >= 0 && i < size_, "TokenFile '{}': index {} out of range [0, {})", path_,
                      i, size_);
    return token_bytes_ == 2 ? static_cast<const uint16_t*>(tokens_)[i]
                             : static_cast<int32_t>(static_cast<const uint32_t*>(tokens_)[i]);
  }

  // Copies tokens [start, start + count) to out, widened to int32.
  void copy(int64_t start, int64_t count, int32_t* out) const {
    check<IndexError>(start >= 0 && count >= 0 && start <= size_ - count,
                      "TokenFile '{}': window [{}, {}) out of range [0, {})", path_, start,
                      start + count, size_);
    if (token_bytes_ == 2) {
      const uint16_t* first = static_cast<const uint16_t*>(tokens_) + start;
      std::copy(first, first + count, out);
    } else {  // ids below 2^31 have the same bits as int32
      const uint32_t* first = static_cast<const uint32_t*>(tokens_) + start;
      std::transform(first, first + count, out, [](uint32_t t) { return static_cast<int32_t>(t); });
    }
  }

 private:
  explicit TokenFile(std::string path) : path_(std::move(path)) {}

  void map() {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IOError(fmt::format("cannot open '{}': {}", path_, std::strerror(errno)));
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      throw IOError(fmt::format("cannot map '{}': not a regular file", path_));
    }
    const size_t bytes = static_cast<size_t>(info.st_size);
    if (bytes > 0) {  // mmap refuses empty ranges; validate() reports the empty file
      void* mapping = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
      if (mapping == MAP_FAILED) {
        const int error = errno;
        ::close(fd);
        throw IOError(fmt::format("cannot map '{}': {}", path_, std::strerror(error)));
      }
      mapping_ = Mapping(mapping, Unmap{bytes});
    }
    ::close(fd);  // the mapping keeps the file open
  }

  void validate() {
    using detail::TokenFileHeader;
    const size_t bytes = mapping_.get_deleter().bytes;
    check<FormatError>(bytes >= sizeof(TokenFileHeader),
                       "token file '{}': {} bytes, shorter than the {}-byte header", path_, bytes,
                       sizeof(TokenFileHeader));
    TokenFileHeader header;
    std::memcpy(&header, mapping_.get(), sizeof header);
    check<FormatError>(std::memcmp(header.magic, detail::kTokenFileMagic, sizeof header.magic) == 0,
                       "token file '{}': bad magic, not a minimoe token file", path_);
    check<FormatError>(header.version == detail::kTokenFileVersion,
                       "token file '{}': version {} is not supported (expected {})", path_,
                       header.version, detail::kTokenFileVersion);
    check<FormatError>(header.token_bytes == 2 || header.token_bytes == 4,
                       "token file '{}': {} bytes per token, expected 2 (uint16) or 4 (uint32)",
                       path_, header.token_bytes);
    check<FormatError>(header.vocab_size >= 1 && header.vocab_size <= kMaxTokenVocab,
                       "token file '{}': vocab size {} outside [1, {}]", path_, header.vocab_size,
                       kMaxTokenVocab);
    // Compared by division: a corrupt count times the width could overflow.
    const size_t payload = bytes - sizeof(TokenFileHeader);
    check<FormatError>(
        payload % header.token_bytes == 0 && payload / header.token_bytes == header.count,
        "token file '{}': the header counts {} tokens of {} bytes, but {} bytes follow it", path_,
        header.count, header.token_bytes, payload);
    tokens_ = static_cast<const char*>(mapping_.get()) + sizeof(TokenFileHeader);
    token_bytes_ = header.token_bytes;
    size_ = static_cast<int64_t>(header.count);
    vocab_size_ = static_cast<int64_t>(header.vocab_size);
    if (token_bytes_ == 2)
      check_below_vocab(static_cast<const uint16_t*>(tokens_));
    else
      check_below_vocab(static_cast<const uint32_t*>(tokens_));
  }

  template <typename Token>
  void check_below_vocab(const Token* tokens) const {
    const Token* bad = std::find_if(
        tokens, tokens + size_, [&](Token t) { return static_cast<int64_t>(t) >= vocab_size_; });
    if (bad != tokens + size_)
      throw FormatError(
          fmt::format("token file '{}': token {} at position {} is not below the vocab size {}",
                      path_, *bad, bad - tokens, vocab_size_));
  }

  struct Unmap {
    size_t bytes;
    void operator()(void* mapping) const { ::munmap(mapping, bytes); }
  };
  using Mapping = std::unique_ptr<void, Unmap>;

  std::string path_;
  Mapping mapping_{nullptr, Unmap{0}};
  const void* tokens_ = nullptr;  // just past the header
  int64_t token_bytes_ = 2;
  int64_t size_ = 0;
  int64_t vocab_size_ = 0;
};

}  // namespace minimoe
