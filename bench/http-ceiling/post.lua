wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"features","datatype":"FP32","shape":[1,10],"data":[41,52000,0.31,4,0,0,12000,6.5,8,0.42]}]}'
