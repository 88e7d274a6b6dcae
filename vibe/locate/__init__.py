"""From a photo to what is searched: the product framed on a plain backdrop, or cut out of a busy one, re-centred on
white the way catalogue photos are shot. Retrieval calls `locate.query.query_views` once per photo."""
