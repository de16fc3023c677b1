// CUDA graphs of the backend's stream (ops.h "graphs"): stream capture into a graph,
// instantiated once, replayed with cudaGraphLaunch. A tmix_graph is a cudaGraphExec_t.
#include "ops.cuh"

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
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph); // the executable graph keeps what it needs
    CUDA_CHECK(e);
    *out = (tmix_graph *)exec;
    return 0;
}

extern "C" int tmix_cuda_graph_launch(tmix_backend *be, tmix_graph *g)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)g, st->stream));
    return 0;
}

extern "C" void tmix_cuda_graph_free(tmix_backend *be, tmix_graph *g)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    if (tmix_cuda_use(st) == cudaSuccess)
        (void)cudaGraphExecDestroy((cudaGraphExec_t)g); // a launch in flight still completes
    (void)cudaGetLastError();
}
