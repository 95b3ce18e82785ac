"""The baseline: a bare FastAPI app doing no work, served with the same uvicorn settings."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/bare")
async def bare_get() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/bare", status_code=201)
async def bare_post(request: Request) -> dict[str, str]:
    await request.body()
    return {"status": "ok"}


if __name__ == "__main__":
    import sys

    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        server_header=False,
    )
