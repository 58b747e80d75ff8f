/* Fuzz target: RPC requests (daemon/rpc.h), answered as silad's server
 * would, by a handler that builds a status reply from the request. */
#include <string.h>

#include "fuzz.h"
#include "rpc.h"

static void handler(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply)
{
    (void)ctx;
    Sila__Ack *a = rpc_alloc(rpc, sizeof *a);
    if (!a)
        return;
    sila__ack__init(a);
    a->message =
        rpc_strdup(rpc, req->method_case == SILA__REQUEST__METHOD_METRICS ? "metrics" : "other");
    reply->result_case = SILA__REPLY__RESULT_ACK;
    reply->ack = a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct rpc rpc = {.handler = handler, .control_allowed = true};
    Sila__Reply reply = SILA__REPLY__INIT;
    reply.version = SILA_RPC_VERSION;
    rpc_answer(&rpc, data, size, &reply);
    /* the reply must pack */
    uint8_t out[4096];
    if (sila__reply__get_packed_size(&reply) <= sizeof out)
        sila__reply__pack(&reply, out);
    rpc_reply_done(&rpc);
    return 0;
}
