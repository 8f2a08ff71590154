"""The same loop with one coroutine that blocks it: time.sleep(0.5) inside a
coroutine holds the whole loop, which stallwatch-watch reports as
`blocked in clock_nanosleep`, naming this file's line."""
import asyncio
import time


async def ticker(out):
    for i in range(3):
        await asyncio.sleep(0.02)
        out.append(f"tick {i}")


async def blocker(out):
    await asyncio.sleep(0.05)
    time.sleep(0.5)  # blocks the loop: every other coroutine waits
    out.append("blocked 500 ms")


async def main():
    out = []
    await asyncio.gather(ticker(out), blocker(out))
    for line in sorted(out):
        print(line)


asyncio.run(main())
