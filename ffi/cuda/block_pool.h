// The device memory cache of the CUDA shim, shared with its no-op stand-in (null_shim.cc), which
// backs it with host memory so its behaviour is tested on machines without a GPU.
//
// Segments come from a raw allocator (cudaMalloc) and are carved into blocks by best fit; a freed
// block merges with the free blocks beside it in its segment. As in torch's caching allocator,
// requests round up to 512 bytes, small ones (<= 1 MiB) share 2 MiB segments, and large ones get
// a 20 MiB segment (under 10 MiB) or one of their own size rounded up to 2 MiB. Training batches
// change shape from step to step (length-bucketed batches); with one cache per size class, each
// new shape cached blocks of its own and the pool grew to several times the memory a step needs,
// one cudaMalloc at a time. Here any free block big enough serves, so the pool stays near the
// peak of live memory and stops calling the raw allocator once it has seen the largest step.
//
// Every kernel runs on one stream, so a freed block may be handed out again at once: later work
// is queued after every earlier use of it.
#pragma once

#include <stddef.h>

#include <initializer_list>
#include <set>
#include <unordered_map>

namespace duaf {

class BlockPool {
 public:
  using RawAlloc = void *(*)(size_t bytes); // NULL on failure
  using RawFree = void (*)(void *p);

  struct Stats {
    double in_use;   // bytes in live blocks
    double cached;   // bytes held in segments but not in live blocks
    double mallocs;  // raw allocations so far
    double live;     // live blocks
    double peak;     // the most bytes ever in live blocks
  };

  static constexpr size_t kRound = 512;
  static constexpr size_t kSmall = 1 << 20;           // requests up to this share small segments
  static constexpr size_t kSmallSegment = 2 << 20;    // segment size for small requests
  static constexpr size_t kLargeSegment = 20 << 20;   // segment size for requests under kMidSize
  static constexpr size_t kMidSize = 10 << 20;
  static constexpr size_t kLargeRound = 2 << 20;      // larger requests: own segment, rounded

  BlockPool(RawAlloc raw_alloc, RawFree raw_free) : raw_alloc_(raw_alloc), raw_free_(raw_free) {}
  BlockPool(const BlockPool &) = delete;
  BlockPool &operator=(const BlockPool &) = delete;

  // A block of at least `bytes`, or NULL when the raw allocator fails even after every entirely
  // free segment was handed back to it.
  void *alloc(size_t bytes) {
    const size_t size = rounded(bytes);
    const bool small = size <= kSmall;
    FreeSet &pool = small ? free_small_ : free_large_;
    Block key{NULL, size, true, small, NULL, NULL};
    auto it = pool.lower_bound(&key);
    Block *b;
    if (it != pool.end()) {
      b = *it;
      pool.erase(it);
    } else {
      b = new_segment(segment_size(size), small);
      if (!b) return NULL;
    }
    // Split off the rest when it is worth keeping: any rest in small segments, over 1 MiB in
    // large ones (smaller rests stay with the block, as torch does, to limit fragmentation).
    const size_t rest = b->size - size;
    if (rest >= (small ? kRound : kSmall + 1)) {
      Block *r = new Block{b->ptr + size, rest, true, small, b, b->next};
      if (b->next) b->next->prev = r;
      b->next = r;
      b->size = size;
      pool.insert(r);
    }
    b->free = false;
    live_[b->ptr] = b;
    stats_.in_use += (double)b->size;
    stats_.cached -= (double)b->size;
    stats_.live += 1;
    if (stats_.in_use > stats_.peak) stats_.peak = stats_.in_use;
    return b->ptr;
  }

  // false: p did not come from this pool (or was freed already).
  bool free(void *p) {
    auto it = live_.find(p);
    if (it == live_.end()) return false;
    Block *b = it->second;
    live_.erase(it);
    stats_.in_use -= (double)b->size;
    stats_.cached += (double)b->size;
    stats_.live -= 1;
    b->free = true;
    FreeSet &pool = b->small ? free_small_ : free_large_;
    if (b->prev && b->prev->free) b = merge(pool, b->prev, b);
    if (b->next && b->next->free) b = merge(pool, b, b->next);
    pool.insert(b);
    return true;
  }

  // Hands every entirely free segment back to the raw allocator.
  void release_cached() {
    for (FreeSet *pool : {&free_small_, &free_large_}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block *b = *it;
        if (b->prev || b->next) {
          ++it;
          continue;
        }
        it = pool->erase(it);
        stats_.cached -= (double)b->size;
        raw_free_(b->ptr);
        delete b;
      }
    }
  }

  const Stats &stats() const { return stats_; }

  // The stats in duaf_pool_stats' order (duaf_cuda.h).
  void write_stats(double *out) const {
    out[0] = stats_.in_use;
    out[1] = stats_.cached;
    out[2] = stats_.mallocs;
    out[3] = stats_.live;
    out[4] = stats_.peak;
  }

 private:
  struct Block {
    char *ptr;
    size_t size;
    bool free;
    bool small;
    Block *prev; // neighbours in the same segment (NULL at its ends)
    Block *next;
  };
  struct BySize {
    bool operator()(const Block *a, const Block *b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using FreeSet = std::set<Block *, BySize>;

  static size_t rounded(size_t bytes) {
    return bytes <= kRound ? kRound : (bytes + kRound - 1) / kRound * kRound;
  }
  static size_t segment_size(size_t size) {
    if (size <= kSmall) return kSmallSegment;
    if (size < kMidSize) return kLargeSegment;
    return (size + kLargeRound - 1) / kLargeRound * kLargeRound;
  }

  Block *new_segment(size_t bytes, bool small) {
    void *p = raw_alloc_(bytes);
    if (!p) {
      release_cached();
      p = raw_alloc_(bytes);
      if (!p) return NULL;
    }
    stats_.mallocs += 1;
    stats_.cached += (double)bytes;
    return new Block{(char *)p, bytes, true, small, NULL, NULL};
  }

  // a and b are neighbours (a first), both free; the merged block is a, out of the free set.
  Block *merge(FreeSet &pool, Block *a, Block *b) {
    pool.erase(a);
    pool.erase(b);
    a->size += b->size;
    a->next = b->next;
    if (b->next) b->next->prev = a;
    delete b;
    return a;
  }

  RawAlloc raw_alloc_;
  RawFree raw_free_;
  FreeSet free_small_, free_large_;
  std::unordered_map<void *, Block *> live_;
  Stats stats_ = {0, 0, 0, 0, 0};
};

} // namespace duaf
