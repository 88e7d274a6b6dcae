"""From a photo to what is searched: every product in it proposed as a box, the chosen one framed on white when its
backdrop is plain and light or cut out of any other, re-centred the way catalogue photos are shot. Retrieval calls
`locate.query.Locator.views` once per photo."""
