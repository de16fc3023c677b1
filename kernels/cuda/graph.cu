// CUDA graphs of the backend's stream (ops.h "graphs"): stream capture into a graph,
// instantiated once, replayed with cudaGraphLaunch.
#include <stdlib.h>

#include "ops.cuh"

// The executable graph and what of the backend it baked in besides the caller's tensors: the
// scratch buffer (cuDNN workspaces, copied op arguments), made anew when a later op needs
// more (by generation: a new buffer may start where the old one did), and the convolutions'
// precision. A launch after either changed is refused.
struct tmix_graph {
    cudaGraphExec_t exec;
    uint64_t scratch_generation;
    tmix_precision precision;
};

// Thread-local mode: other threads (the other lanes, each with a stream of its own) keep
// allocating and synchronising while this one captures; only this thread's calls that
// cannot be recorded end the capture in failure.
extern "C" int tmix_cuda_capture_begin(tmix_backend *be)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaStreamBeginCapture(st->stream, cudaStreamCaptureModeThreadLocal));
    return 0;
}

// Always leaves the stream out of capture mode, so a failed capture costs only the graph.
extern "C" int tmix_cuda_capture_end(tmix_backend *be, tmix_graph **out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    *out = NULL;
    CUDA_CHECK(tmix_cuda_use(st));
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(st->stream, &graph);
    if (e != cudaSuccess) {
        if (graph)
            (void)cudaGraphDestroy(graph);
        return tmix_cuda_error(TMIX_ECUDA, "cudaStreamEndCapture(st->stream, &graph)", __func__,
                               __FILE__, __LINE__, cudaGetErrorString(e));
    }
    tmix_graph *g = (tmix_graph *)calloc(1, sizeof *g);
    if (!g) {
        (void)cudaGraphDestroy(graph);
        return tmix_fail(TMIX_ENOMEM, "capture_end: out of host memory");
    }
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    (void)cudaGraphDestroy(graph); // the executable graph keeps what it needs
    if (e != cudaSuccess) {
        free(g);
        return tmix_cuda_error(TMIX_ECUDA, "cudaGraphInstantiate(&g->exec, graph, 0)", __func__,
                               __FILE__, __LINE__, cudaGetErrorString(e));
    }
    g->scratch_generation = st->scratch_generation;
    g->precision = st->precision;
    *out = g;
    return 0;
}

extern "C" int tmix_cuda_graph_launch(tmix_backend *be, tmix_graph *g)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    const bool moved = g->scratch_generation != st->scratch_generation;
    if (moved || g->precision != st->precision)
        return tmix_fail(TMIX_EINVAL, "graph_launch on %s: the graph was recorded with %s; "
                         "record it again", st->name,
                         moved ? "a scratch buffer since made anew" : "another precision");
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaGraphLaunch(g->exec, st->stream));
    return 0;
}

extern "C" void tmix_cuda_graph_free(tmix_backend *be, tmix_graph *g)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    // A launch in flight still completes. A failure here is not reported (void call) and
    // must not be taken by the next kernel launch's check for its own.
    if (tmix_cuda_use(st) != cudaSuccess || cudaGraphExecDestroy(g->exec) != cudaSuccess)
        (void)cudaGetLastError();
    free(g);
}
