/* model.h - scoring trained models: the kernels behind ls.model.
 *
 * Owns the in-memory form of a loaded model and the functions that score one
 * row with it: tree ensembles (XGBoost's gbtree) and linear / logistic
 * regression. lua/luastream/model.lua reads the model file, checks it, builds
 * these arrays with ffi.new (Lua's GC owns them; the model object keeps them
 * alive) and calls the ls_ffi_model_* entry points through ffi.C. This file
 * allocates nothing, and trusts the arrays, which model.lua checked and built
 * (every index in range, every tree a tree).
 *
 * Tree ensembles reproduce XGBoost's CPU predictor bit for bit:
 *  - XGBoost sends a row left at a split when (float)x < split and right
 *    otherwise, and a missing feature (NaN) the node's default way. Here each
 *    row is first written as floats in three slots per feature f:
 *      row[f]          (float)x, or -inf when x is NaN  (nodes whose default is left)
 *      row[nf + f]     (float)x, or +inf when x is NaN  (default right)
 *      row[2 nf + f]   0 when x is NaN, else 1          (only where needed, below)
 *    and every split reads one slot and goes right when slot >= split. That is
 *    XGBoost's outcome for every x: -inf >= s is false and +inf >= s true for
 *    any split s > -inf. A split s of -inf or NaN (no x is below it: every
 *    present value goes right) with the default left reads the third slot
 *    with the split 0.5; with the default right it reads row[nf + f] with -inf;
 *  - the leaves are added in float, in tree order, to the base margin (a
 *    float) of the tree's output;
 *  - transforms in float: sigmoid 1 / (1 + expf(-m)); softmax with the
 *    largest margin subtracted (fmaxf), expf, a double sum and a division by
 *    (float)sum; argmax is the first of the largest margins.
 * Linear models compute in double throughout. docs/models.md has the rules. */
#ifndef LS_MODEL_H
#define LS_MODEL_H

#include <stdint.h>

/* Trees are walked LS_MODEL_LANES at a time, level by level: independent
 * chains of loads for the CPU to overlap, and no branch to mispredict. */
#define LS_MODEL_LANES 8

enum { LS_MODEL_TREES = 1, LS_MODEL_LINEAR = 2 };
enum {
  LS_MODEL_IDENTITY = 0, /* the margin itself */
  LS_MODEL_SIGMOID = 1,  /* one output: 1 / (1 + exp(-margin)) */
  LS_MODEL_SOFTMAX = 2,  /* every output: class probabilities */
  LS_MODEL_ARGMAX = 3    /* the index of the largest margin (the first of equals) */
};

/* LS_MODEL_LANES trees (the last block may hold fewer; the rest of its lanes
 * are single leaves worth 0, never added). Two layouts:
 *  - perfect (child == NULL): every tree padded to a complete tree of `depth`
 *    levels (a leaf above the last level is repeated over the leaves below
 *    it). Node j (0-based, breadth first: children of j are 2j+1 and 2j+2) of
 *    lane k is at feat/split[j * LANES + k]; after `depth` steps the walk is at
 *    node j = 2^depth - 1 + i and the value is leaf[i * LANES + k]. Chosen for
 *    shallow, full trees: no child to load;
 *  - linked: node n of the block is feat[n], split[n], child[n] (the left
 *    child; the right one is child[n] + 1) and leaf[n]; a leaf is its own
 *    child with the split NaN, so the walk stays there; root[k] is lane k's
 *    root. For deep, sparse trees, whose complete form would be too large. */
typedef struct ls_model_block {
  int32_t depth;            /* the levels of the deepest tree of the block */
  int32_t ntrees;           /* 1..LANES: the trees in use */
  const uint32_t *feat;     /* the slot of the row a split reads */
  const float *split;
  const float *leaf;
  const uint32_t *child;    /* NULL: the perfect layout */
  uint32_t root[LS_MODEL_LANES];
} ls_model_block;

typedef struct ls_model {
  int32_t kind;       /* LS_MODEL_TREES or LS_MODEL_LINEAR */
  int32_t transform;  /* LS_MODEL_IDENTITY ... LS_MODEL_ARGMAX */
  int32_t nfeatures;  /* >= 1 */
  int32_t noutputs;   /* >= 1: margins (classes) */
  /* trees */
  int32_t nblocks;
  int32_t present_slots;        /* non-zero: some split reads row[2 nf + f] */
  const ls_model_block *blocks;
  const int32_t *group;         /* per tree: the output it adds to */
  const float *base;            /* per output: the base margin */
  float *row;                   /* scratch: 3 * nfeatures floats */
  /* linear */
  const double *weights;        /* noutputs rows of nfeatures */
  const double *bias;           /* per output */
} ls_model;

/* Scores the row x (nfeatures doubles; NaN is missing). Writes the noutputs
 * results to out: the margins when raw is non-zero, else the transformed
 * values (for ARGMAX, the margins). Returns out[0], or for ARGMAX, when raw is
 * zero, the class. Trees: every result is a float's value. */
double ls_ffi_model_predict(const ls_model *m, const double *x, double *out, int32_t raw);

#endif
