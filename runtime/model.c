/* model.c - scoring trained models (see model.h for the layout and the rules).
 *
 * The tree walk is branch-free: LS_MODEL_LANES trees of a block advance one
 * level per step, each lane loading its node's slot and split and moving to
 * a child by the comparison's 0 or 1. The lanes are independent chains of
 * loads, so the CPU overlaps them; there is no branch on the data to
 * mispredict. Missing values cost nothing in the walk: the row's slots
 * (model.h) already hold -inf or +inf for them. The leaves are then added in
 * tree order, in float, as XGBoost adds them.
 *
 * Chosen by measurement on 100-tree, depth-6 models (docs/models.md, "Speed";
 * tests/bench/model_bench.py): the complete layout is faster than the linked
 * one, both are far faster than the ensemble compiled to Lua source, and AVX2
 * or AVX-512 gathers of the same lanes measured slower than these scalar loads. */
#include "model.h"

#include <math.h>
#include <string.h>

#define LANES LS_MODEL_LANES

static void fill_row(const ls_model *m, const double *x) {
  int32_t nf = m->nfeatures;
  float *row = m->row;
  for (int32_t f = 0; f < nf; f++) {
    double v = x[f];
    int missing = v != v;
    float s = (float)v;
    row[f] = missing ? -INFINITY : s;
    row[nf + f] = missing ? INFINITY : s;
  }
  if (m->present_slots)
    for (int32_t f = 0; f < nf; f++) row[2 * nf + f] = x[f] != x[f] ? 0.0f : 1.0f;
}

/* The leaf each lane of block b reaches, into at[] (an index into b->leaf). */
static void walk_block(const ls_model_block *b, const float *row, uint32_t at[LANES]) {
  const uint32_t *feat = b->feat;
  const float *split = b->split;
  if (!b->child) {
    for (int k = 0; k < LANES; k++) at[k] = 0;
    for (int32_t s = 0; s < b->depth; s++)
      for (int k = 0; k < LANES; k++) {
        uint32_t i = at[k] * LANES + (uint32_t)k;
        at[k] = 2 * at[k] + 1 + (uint32_t)(row[feat[i]] >= split[i]);
      }
    uint32_t first_leaf = (1u << b->depth) - 1;
    for (int k = 0; k < LANES; k++) at[k] = (at[k] - first_leaf) * LANES + (uint32_t)k;
  } else {
    const uint32_t *child = b->child;
    memcpy(at, b->root, sizeof b->root);
    for (int32_t s = 0; s < b->depth; s++)
      for (int k = 0; k < LANES; k++) {
        uint32_t n = at[k];
        at[k] = child[n] + (uint32_t)(row[feat[n]] >= split[n]);
      }
  }
}

static void walk_trees(const ls_model *m, const double *x, double *out) {
  fill_row(m, x);
  const float *row = m->row;
  if (m->noutputs == 1) {
    float acc = m->base[0];
    for (int32_t b = 0; b < m->nblocks; b++) {
      const ls_model_block *blk = &m->blocks[b];
      uint32_t at[LANES];
      walk_block(blk, row, at);
      for (int k = 0; k < blk->ntrees; k++) acc += blk->leaf[at[k]];
    }
    out[0] = acc;
    return;
  }
  for (int32_t g = 0; g < m->noutputs; g++) out[g] = m->base[g];
  for (int32_t b = 0; b < m->nblocks; b++) {
    const ls_model_block *blk = &m->blocks[b];
    uint32_t at[LANES];
    walk_block(blk, row, at);
    const int32_t *group = m->group + (size_t)b * LANES;
    for (int k = 0; k < blk->ntrees; k++) out[group[k]] = (double)((float)out[group[k]] + blk->leaf[at[k]]);
  }
}

static void linear(const ls_model *m, const double *x, double *out) {
  int32_t nf = m->nfeatures;
  for (int32_t g = 0; g < m->noutputs; g++) {
    const double *w = m->weights + (size_t)g * (size_t)nf;
    double z = m->bias[g];
    for (int32_t i = 0; i < nf; i++) {
      double v = x[i];
      if (v == v) z += w[i] * v; /* a missing feature adds nothing */
    }
    out[g] = z;
  }
}

/* XGBoost's softmax over float margins. */
static void softmax_float(double *out, int32_t n) {
  float wmax = (float)out[0];
  for (int32_t i = 1; i < n; i++) wmax = fmaxf((float)out[i], wmax);
  double sum = 0;
  for (int32_t i = 0; i < n; i++) {
    float e = expf((float)out[i] - wmax);
    out[i] = e;
    sum += e;
  }
  float total = (float)sum;
  for (int32_t i = 0; i < n; i++) out[i] = (float)out[i] / total;
}

static void softmax_double(double *out, int32_t n) {
  double wmax = out[0];
  for (int32_t i = 1; i < n; i++) wmax = fmax(out[i], wmax);
  double sum = 0;
  for (int32_t i = 0; i < n; i++) {
    out[i] = exp(out[i] - wmax);
    sum += out[i];
  }
  for (int32_t i = 0; i < n; i++) out[i] /= sum;
}

double ls_ffi_model_predict(const ls_model *m, const double *x, double *out, int32_t raw) {
  int trees = m->kind == LS_MODEL_TREES;
  if (trees) walk_trees(m, x, out);
  else linear(m, x, out);
  if (raw) return out[0];
  switch (m->transform) {
  case LS_MODEL_SIGMOID:
    if (trees) out[0] = 1.0f / (1.0f + expf(-(float)out[0]));
    else out[0] = 1.0 / (1.0 + exp(-out[0]));
    break;
  case LS_MODEL_SOFTMAX:
    if (trees) softmax_float(out, m->noutputs);
    else softmax_double(out, m->noutputs);
    break;
  case LS_MODEL_ARGMAX: {
    int32_t best = 0;
    for (int32_t i = 1; i < m->noutputs; i++)
      if (out[i] > out[best]) best = i;
    return best;
  }
  default:
    break;
  }
  return out[0];
}
