/* Fuzz target: RPC requests (daemon/rpc.h), answered as silad's server
 * would, by a handler that builds a reply from the request; read replies
 * are kept and sent again as the server's cache does. Every answer must
 * decode as a sila.Reply. */
#include <stdlib.h>
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
    struct rpc_reply out;
    if (rpc_answer(&rpc, data, size, &out) == 0) {
        Sila__Reply *r = sila__reply__unpack(NULL, out.len, out.buf);
        if (!r || r->version != SILA_RPC_VERSION)
            abort();
        sila__reply__free_unpacked(r, NULL);
    }
    return 0;
}
