/*
 * JishNet's first block on the CPU in one pass: 5 x 5 convolution of a
 * one-channel image, max pooling with a square window and stride, then ReLU.
 *
 * PyTorch runs the three as separate operators. The convolution of a single
 * input channel is memory-bound in oneDNN. The full-size map it writes
 * (channels x rows x cols floats, 676 MB at 3600 x 3600 with 13 channels) is
 * read again by the pooling. In the backward pass it comes back as a
 * full-size gradient. Here each pooled row is computed from a few image rows held in
 * the cache, and only the pooled map and the position of each window's
 * maximum are written.
 *
 * Layouts (all row-major, float32 unless stated):
 *   padded   batch x (rows + 4) x (cols + 4): the image with 2 zero pixels
 *            on each side (the convolution's padding);
 *   weight   channels x 25, bias channels;
 *   output   batch x pooled_rows x pooled_cols x channels (NHWC);
 *   argmax   same shape as output, uint8: a * window + b for the window's
 *            row a and column b of the maximum.
 *
 * Ties pick the first maximum in row-major order within the window, as
 * PyTorch's max_pool2d does, so gradients go to the same pixel.
 *
 * Work is split by pooled rows: the caller passes [first, last) of the
 * batch x pooled_rows rows and may run several calls at once on disjoint
 * ranges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KERNEL 5
#define TAPS (KERNEL * KERNEL)

int raylar_first_block_forward(const float *padded, int64_t rows, int64_t cols,
                               const float *weight, const float *bias, int64_t channels,
                               int64_t window, float *output, uint8_t *argmax,
                               int64_t first, int64_t last)
{
    const int64_t pooled_rows = rows / window;
    const int64_t pooled_cols = cols / window;
    const int64_t used_cols = pooled_cols * window;
    const int64_t stride = cols + KERNEL - 1;
    const int64_t image_size = (rows + KERNEL - 1) * stride;

    /* one convolution row, and the running maximum over the window's rows */
    float *conv = malloc(sizeof(float) * (size_t)used_cols);
    float *column_max = malloc(sizeof(float) * (size_t)used_cols);
    uint8_t *column_arg = malloc((size_t)used_cols);
    if (!conv || !column_max || !column_arg) {
        free(conv);
        free(column_max);
        free(column_arg);
        return 1;
    }

    for (int64_t job = first; job < last; job++) {
        const int64_t sample = job / pooled_rows;
        const int64_t pooled_row = job % pooled_rows;
        const float *image = padded + sample * image_size;
        float *out_row = output + (sample * pooled_rows + pooled_row) * pooled_cols * channels;
        uint8_t *arg_row = argmax + (sample * pooled_rows + pooled_row) * pooled_cols * channels;

        for (int64_t c = 0; c < channels; c++) {
            const float *w = weight + c * TAPS;
            for (int64_t a = 0; a < window; a++) {
                const int64_t row = pooled_row * window + a;
                for (int64_t x = 0; x < used_cols; x++)
                    conv[x] = bias[c];
                /* five taps of one kernel row per pass over the output row */
                for (int64_t ki = 0; ki < KERNEL; ki++) {
                    const float *src = image + (row + ki) * stride;
                    const float w0 = w[ki * KERNEL + 0], w1 = w[ki * KERNEL + 1];
                    const float w2 = w[ki * KERNEL + 2], w3 = w[ki * KERNEL + 3];
                    const float w4 = w[ki * KERNEL + 4];
                    for (int64_t x = 0; x < used_cols; x++)
                        conv[x] += w0 * src[x] + w1 * src[x + 1] + w2 * src[x + 2]
                                   + w3 * src[x + 3] + w4 * src[x + 4];
                }
                if (a == 0) {
                    memcpy(column_max, conv, sizeof(float) * (size_t)used_cols);
                    memset(column_arg, 0, (size_t)used_cols);
                } else {
                    for (int64_t x = 0; x < used_cols; x++) {
                        const int better = conv[x] > column_max[x];
                        column_max[x] = better ? conv[x] : column_max[x];
                        column_arg[x] = better ? (uint8_t)a : column_arg[x];
                    }
                }
            }
            /* across the window's columns: the smallest (row, column) among equal maxima */
            for (int64_t p = 0; p < pooled_cols; p++) {
                const int64_t x0 = p * window;
                float best = column_max[x0];
                int best_row = column_arg[x0];
                int best_col = 0;
                for (int64_t b = 1; b < window; b++) {
                    const float value = column_max[x0 + b];
                    const int value_row = column_arg[x0 + b];
                    if (value > best || (value == best && value_row < best_row)) {
                        best = value;
                        best_row = value_row;
                        best_col = (int)b;
                    }
                }
                out_row[p * channels + c] = best > 0.0f ? best : 0.0f;
                arg_row[p * channels + c] = (uint8_t)(best_row * window + best_col);
            }
        }
    }
    free(conv);
    free(column_max);
    free(column_arg);
    return 0;
}

/*
 * Weight and bias gradients of the block. Only the maximum of each window
 * receives a gradient, and only where the ReLU passed it (output > 0), so
 * each (pooled pixel, channel) adds its gradient times the 5 x 5 image patch
 * under that maximum. The sums over [first, last) are added to grad_weight
 * (channels x 25) and grad_bias (channels); give each concurrent call its
 * own pair.
 */
void raylar_first_block_backward(const float *padded, int64_t rows, int64_t cols,
                                 int64_t channels, int64_t window, const float *output,
                                 const uint8_t *argmax, const float *grad_output,
                                 float *grad_weight, float *grad_bias, int64_t first,
                                 int64_t last)
{
    const int64_t pooled_rows = rows / window;
    const int64_t pooled_cols = cols / window;
    const int64_t stride = cols + KERNEL - 1;
    const int64_t image_size = (rows + KERNEL - 1) * stride;

    for (int64_t job = first; job < last; job++) {
        const int64_t sample = job / pooled_rows;
        const int64_t pooled_row = job % pooled_rows;
        const float *image = padded + sample * image_size;
        const int64_t offset = (sample * pooled_rows + pooled_row) * pooled_cols * channels;
        for (int64_t p = 0; p < pooled_cols; p++) {
            for (int64_t c = 0; c < channels; c++) {
                const int64_t at = offset + p * channels + c;
                const float g = grad_output[at];
                if (!(output[at] > 0.0f) || g == 0.0f)
                    continue;
                const int64_t row = pooled_row * window + argmax[at] / window;
                const int64_t col = p * window + argmax[at] % window;
                const float *patch = image + row * stride + col;
                float *gw = grad_weight + c * TAPS;
                for (int64_t ki = 0; ki < KERNEL; ki++)
                    for (int64_t kj = 0; kj < KERNEL; kj++)
                        gw[ki * KERNEL + kj] += g * patch[ki * stride + kj];
                grad_bias[c] += g;
            }
        }
    }
}
