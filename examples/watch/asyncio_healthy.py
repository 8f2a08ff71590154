"""Three coroutines that wait the cooperative way (asyncio.sleep): run under
stallwatch-watch, no slice of the loop is long, so nothing is reported and
the output is the same as unwatched."""
import asyncio


async def worker(name, delay, rounds, out):
    for i in range(rounds):
        await asyncio.sleep(delay)
        out.append(f"{name} {i}")


async def main():
    out = []
    await asyncio.gather(worker("a", 0.02, 5, out), worker("b", 0.03, 4, out), worker("c", 0.05, 2, out))
    for line in sorted(out):
        print(line)


asyncio.run(main())
