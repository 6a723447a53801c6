// The SentencePiece BPE tokenizer (qk/model/tokenizer.hpp): checks of the vocabulary, encoding, decoding.
// Behaviour as llama.cpp's llm_tokenizer_spm_session::tokenize, llama_vocab::impl::tokenize (dummy prefix, space
// escaping), byte_to_token, token_to_piece and detokenize (src/llama-vocab.cpp, commit c392e509).
#include "qk/model/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <queue>
#include <unordered_map>

#include <fmt/format.h>

#include "qk/core/error.hpp"

namespace qk::model {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space

// The byte a byte token stands for, read as llama.cpp does (strtol of the two characters after "<0x"), or -1 when
// the text does not start "<0x" followed by a hex digit.
int byte_token_value(std::string_view t) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (t.size() < 4 || t.substr(0, 3) != "<0x" || hex(t[3]) < 0) return -1;
  int v = hex(t[3]);
  if (t.size() >= 5 && hex(t[4]) >= 0) v = v * 16 + hex(t[4]);
  return v;
}

// Length of the UTF-8 character starting at s[i] and its code point, or 0 when the bytes there are not valid UTF-8
// (overlong forms, surrogates, code points above U+10FFFF and truncated sequences included).
size_t utf8_char(std::string_view s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() - i < n) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  cp = static_cast<char32_t>(c & (0xFF >> (n + 1)));
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(k) & 0x3F);
  return n;
}

std::string describe_char(char32_t cp, std::string_view utf8) {
  std::string s = fmt::format("U+{:04X}", static_cast<uint32_t>(cp));
  switch (cp) {
    case '\n': return s + " (line feed)";
    case '\r': return s + " (carriage return)";
    case '\t': return s + " (tab)";
    case ' ': return s + " (space)";
    default: break;
  }
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return s + " (a control character)";
  return fmt::format("{} '{}'", s, utf8);
}

// One character of the text (or one merged run of characters), linked to its live neighbours.
struct Symbol {
  uint32_t start;  // in the escaped text
  uint32_t len;    // 0 once merged into its left neighbour
  int32_t prev, next;
};

// A candidate merge of two adjacent symbols into the piece of that score; `len` detects stale entries (a symbol
// only grows, so a changed length means one side was merged since).
struct Candidate {
  float score;
  int32_t left, right;
  uint32_t len;
};
// Priority: higher score first; equal scores, the leftmost pair first.
struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

struct Tokenizer::Impl {
  Vocabulary vocab;
  std::string source;
  std::unordered_map<std::string_view, int32_t> index;  // piece text -> id (views into vocab.tokens)
  std::array<int32_t, 256> byte_id{};                    // byte fallback: <0xNN> (or the one-byte piece), else -1
  bool all_bytes = false;
  // No piece has a '▁' right after another character (true of vocabularies trained with whitespace splitting):
  // then no piece can span the boundary before a run of spaces, and the text is merged one word at a time.
  bool split_at_spaces = false;
  std::vector<int32_t> specials;  // control, unknown and user-defined tokens, longest text first (then by id)

  Impl(Vocabulary v, std::string s) : vocab(std::move(v)), source(std::move(s)) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
};

Tokenizer::Tokenizer(Vocabulary vocab, std::string source) {
  auto impl = std::make_shared<Impl>(std::move(vocab), std::move(source));
  Vocabulary& v = impl->vocab;
  const std::string& src = impl->source;
  const auto n = v.tokens.size();
  if (n == 0) fail<FormatError>("{}: the vocabulary has no tokens", src);
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    fail<FormatError>("{}: {} tokens are more than int32 ids can number", src, n);
  const auto count = static_cast<int32_t>(n);
  auto check_id = [&](int32_t id, const char* what) {
    if (id < -1 || id >= count) fail<FormatError>("{}: {} id {} is outside the vocabulary of {} tokens", src, what, id, n);
  };
  check_id(v.bos, "BOS");
  check_id(v.eos, "EOS");
  check_id(v.unk, "unknown-token");
  if (v.add_bos && v.bos < 0) fail<FormatError>("{}: the vocabulary adds a BOS token but has none", src);
  if (v.add_eos && v.eos < 0) fail<FormatError>("{}: the vocabulary adds an EOS token but has none", src);

  impl->index.reserve(n);
  for (int32_t id = 0; id < count; ++id) {
    TokenPiece& t = v.tokens[static_cast<size_t>(id)];
    if (t.text.empty()) t.text = fmt::format("[EMPTY_{}]", id);  // llama.cpp's name for an empty piece
    if (t.type == TokenType::Byte && byte_token_value(t.text) < 0)
      fail<FormatError>("{}: token {} '{}' is a byte token but not of the form <0xNN>", src, id, t.text);
  }
  for (int32_t id = 0; id < count; ++id) {
    const auto [it, fresh] = impl->index.emplace(v.tokens[static_cast<size_t>(id)].text, id);
    if (!fresh) fail<FormatError>("{}: tokens {} and {} are both '{}'", src, it->second, id, it->first);
  }
  int bytes = 0;
  for (int b = 0; b < 256; ++b) {
    int32_t id = -1;
    if (auto it = impl->index.find(fmt::format("<0x{:02X}>", b)); it != impl->index.end()) {
      id = it->second;
      ++bytes;
    } else if (auto it1 = impl->index.find(std::string(1, static_cast<char>(b))); it1 != impl->index.end()) {
      id = it1->second;  // llama.cpp's second choice: the byte as a one-character piece
    }
    impl->byte_id[static_cast<size_t>(b)] = id;
  }
  impl->all_bytes = bytes == 256;
  for (int32_t id = 0; id < count; ++id) {
    const TokenType ty = v.tokens[static_cast<size_t>(id)].type;
    if (ty == TokenType::Control || ty == TokenType::Unknown || ty == TokenType::UserDefined)
      impl->specials.push_back(id);
  }
  std::stable_sort(impl->specials.begin(), impl->specials.end(), [&](int32_t a, int32_t b) {
    return v.tokens[static_cast<size_t>(a)].text.size() > v.tokens[static_cast<size_t>(b)].text.size();
  });
  impl->split_at_spaces = true;
  for (const TokenPiece& t : v.tokens)
    for (size_t k = t.text.find(kSpace, 1); k != std::string::npos; k = t.text.find(kSpace, k + 1))
      if (k < kSpace.size() || t.text.compare(k - kSpace.size(), kSpace.size(), kSpace) != 0)
        impl->split_at_spaces = false;
  impl_ = std::move(impl);
}

int32_t Tokenizer::size() const { return static_cast<int32_t>(impl_->vocab.tokens.size()); }
int32_t Tokenizer::bos() const { return impl_->vocab.bos; }
int32_t Tokenizer::eos() const { return impl_->vocab.eos; }
int32_t Tokenizer::unk() const { return impl_->vocab.unk; }
bool Tokenizer::has_byte_fallback() const { return impl_->all_bytes; }
const Vocabulary& Tokenizer::vocabulary() const { return impl_->vocab; }
const std::string& Tokenizer::source() const { return impl_->source; }

const TokenPiece& Tokenizer::token(int32_t id) const {
  if (id < 0 || id >= size())
    fail<InvalidArgument>("{}: token id {} is outside the vocabulary of {} tokens", impl_->source, id, size());
  return impl_->vocab.tokens[static_cast<size_t>(id)];
}

int32_t Tokenizer::find(std::string_view piece) const {
  const auto it = impl_->index.find(piece);
  return it == impl_->index.end() ? -1 : it->second;
}

// Encodes one stretch of text at a time: its characters become symbols of an escaped copy ('▁' for spaces), the
// adjacent pairs that form pieces are merged best first, and the surviving symbols become ids. The buffers are
// reused from one stretch to the next, so a long text costs no more memory than its longest word.
class Tokenizer::Encoder {
 public:
  Encoder(const Impl& im, std::string_view text, std::string_view source, std::vector<int32_t>& out)
      : im_(im), text_(text), source_(source), out_(out) {}

  void add(std::string_view escaped, int64_t from) {
    sym_.push_back({static_cast<uint32_t>(buf_.size()), static_cast<uint32_t>(escaped.size()),
                    static_cast<int32_t>(sym_.size()) - 1, static_cast<int32_t>(sym_.size()) + 1});
    origin_.push_back(from);
    buf_.append(escaped);
  }
  bool empty() const { return sym_.empty(); }

  void flush() {
    if (sym_.empty()) return;
    sym_.back().next = -1;
    for (size_t i = 1; i < sym_.size(); ++i) consider(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
    while (!queue_.empty()) {
      const Candidate c = queue_.top();
      queue_.pop();
      Symbol& l = sym_[static_cast<size_t>(c.left)];
      Symbol& r = sym_[static_cast<size_t>(c.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;  // stale: a side was merged since
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym_[static_cast<size_t>(r.next)].prev = c.left;
      consider(l.prev, c.left);
      consider(c.left, l.next);
    }
    for (size_t i = 0; i < sym_.size(); ++i)
      if (sym_[i].len != 0) emit(i);  // the others were merged into their left neighbour
    sym_.clear();
    origin_.clear();
    buf_.clear();
  }

 private:
  void consider(int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Symbol& a = sym_[static_cast<size_t>(l)];
    const Symbol& b = sym_[static_cast<size_t>(r)];
    const auto it = im_.index.find(std::string_view(buf_).substr(a.start, a.len + b.len));
    if (it == im_.index.end()) return;
    queue_.push({im_.vocab.tokens[static_cast<size_t>(it->second)].score, l, r, a.len + b.len});
  }

  void emit(size_t i) {
    const std::string_view piece = std::string_view(buf_).substr(sym_[i].start, sym_[i].len);
    if (const auto it = im_.index.find(piece); it != im_.index.end()) {
      out_.push_back(it->second);
      return;
    }
    // Only single characters are never pieces (every merge made a piece): spell them with byte tokens.
    for (const char ch : piece) {
      const int32_t id = im_.byte_id[static_cast<unsigned char>(ch)];
      if (id < 0) unencodable(origin_[i]);
      out_.push_back(id);
    }
  }

  [[noreturn]] void unencodable(int64_t at) const {
    char32_t cp = ' ';
    std::string_view original = " ";
    if (at >= 0) original = text_.substr(static_cast<size_t>(at), utf8_char(text_, static_cast<size_t>(at), cp));
    fail<FormatError>("{}: {} {} cannot be encoded: the vocabulary ({}) has no piece for it{}", source_,
                      at >= 0 ? fmt::format("byte {}:", at) : std::string("the space put before the text:"),
                      describe_char(cp, original), im_.source, im_.all_bytes ? "" : " and no byte tokens to spell it");
  }

  const Impl& im_;
  std::string_view text_, source_;
  std::vector<int32_t>& out_;
  std::string buf_;              // the escaped stretch
  std::vector<Symbol> sym_;
  std::vector<int64_t> origin_;  // byte offset of each symbol's character in the text; -1 for the dummy prefix
  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> queue_;
};

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& o) const {
  const Impl& im = *impl_;
  const Vocabulary& v = im.vocab;
  if (text.size() >= (size_t{1} << 30))  // symbol offsets are uint32, and every space grows to 3 bytes
    fail<InvalidArgument>("{}: {} bytes of text: the tokenizer takes less than 1 GiB at once", o.source, text.size());
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (o.add_special && v.add_bos) ids.push_back(v.bos);

  // Special tokens found in the text first (llama.cpp's tokenizer_st_partition): user-defined pieces always,
  // control and unknown ones with parse_special; longest first, each occurrence leftmost first.
  struct Fragment {
    size_t begin, end;
    int32_t special;  // >= 0: this token; -1: text
  };
  std::vector<Fragment> frags;
  if (!text.empty()) frags.push_back({0, text.size(), -1});
  for (const int32_t id : im.specials) {
    const TokenPiece& t = v.tokens[static_cast<size_t>(id)];
    if (t.type != TokenType::UserDefined && !o.parse_special) continue;
    std::vector<Fragment> next;
    for (const Fragment& f : frags) {
      if (f.special >= 0) {
        next.push_back(f);
        continue;
      }
      size_t at = f.begin;
      for (size_t m; (m = text.find(t.text, at)) != std::string_view::npos && m + t.text.size() <= f.end;) {
        if (m > at) next.push_back({at, m, -1});
        next.push_back({m, m + t.text.size(), id});
        at = m + t.text.size();
      }
      if (at < f.end) next.push_back({at, f.end, -1});
    }
    frags = std::move(next);
  }

  // Each stretch of text on its own, with the dummy prefix when it is first or follows a special token. With
  // split_at_spaces no piece spans the start of a run of spaces, so each word (its leading spaces included) is
  // merged on its own: the same result as merging the whole stretch, in a small working set.
  Encoder enc(im, text, o.source, ids);
  bool after_special = true;
  for (const Fragment& f : frags) {
    if (f.special >= 0) {
      ids.push_back(f.special);
      after_special = true;
      continue;
    }
    if (v.add_space_prefix && after_special) enc.add(kSpace, -1);
    after_special = false;
    bool after_space = true;
    for (size_t i = f.begin; i < f.end;) {
      char32_t cp;
      const size_t len = utf8_char(text.substr(0, f.end), i, cp);
      if (len == 0)
        fail<FormatError>("{}: invalid UTF-8 at byte {} (0x{:02X})", o.source, i, static_cast<unsigned char>(text[i]));
      const std::string_view ch = text[i] == ' ' ? kSpace : text.substr(i, len);
      const bool space = ch == kSpace;  // ' ' or a '▁' in the text itself: the same symbol
      if (space && !after_space && im.split_at_spaces) enc.flush();
      after_space = space;
      enc.add(ch, static_cast<int64_t>(i));
      i += len;
    }
    enc.flush();
  }
  if (o.add_special && v.add_eos) ids.push_back(v.eos);
  return ids;
}

std::string Tokenizer::piece(int32_t id, bool special) const {
  const TokenPiece& t = token(id);
  switch (t.type) {
    case TokenType::Control:
    case TokenType::Unknown: return special ? t.text : std::string();
    case TokenType::UserDefined: return t.text;
    case TokenType::Normal: {
      std::string s;
      s.reserve(t.text.size());
      for (size_t i = 0; i < t.text.size();) {
        if (t.text.compare(i, kSpace.size(), kSpace) == 0) {
          s += ' ';
          i += kSpace.size();
        } else {
          s += t.text[i++];
        }
      }
      return s;
    }
    case TokenType::Byte: return std::string(1, static_cast<char>(byte_token_value(t.text)));
    case TokenType::Unused:
    case TokenType::Undefined: break;
  }
  return {};  // llama.cpp prints nothing for the other types
}

std::string Tokenizer::decode(std::span<const int32_t> ids, const DecodeOptions& o) const {
  const Vocabulary& v = impl_->vocab;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= size())
      fail<InvalidArgument>("{}: token id {} at position {} is outside the vocabulary of {} tokens", impl_->source,
                            ids[i], i, size());
  bool strip = v.add_space_prefix;  // the dummy prefix: one leading space of the first token
  if (o.remove_special && v.add_bos && !ids.empty() && ids.front() == v.bos) {
    strip = false;  // as llama.cpp: the text after a removed BOS keeps its space
    ids = ids.subspan(1);
  }
  if (o.remove_special && v.add_eos && !ids.empty() && ids.back() == v.eos) ids = ids.first(ids.size() - 1);
  std::string out;
  for (const int32_t id : ids) {
    std::string p = piece(id, o.special);
    if (strip && !p.empty() && p.front() == ' ') p.erase(0, 1);
    strip = false;
    out += p;
  }
  return out;
}

}  // namespace qk::model
